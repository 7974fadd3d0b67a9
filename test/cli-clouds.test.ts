// The CLI's Azure and GCS destinations, as users run it (dist/cli.js in its own process): az:// and
// gs:// with their environment, a download link, split output, and what it refuses before any row.
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import type { ContainerClient } from '@azure/storage-blob'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAzure, type TestAzure } from './fixtures/azurite.js'
import { parse } from '../src/cli/args.js'
import { runCli } from './fixtures/cli.js'
import { startS3, type TestS3 } from './fixtures/s3-server.js'
import { tempDir } from './helpers.js'

let azure: TestAzure
let container: ContainerClient
let gcs: TestS3
beforeAll(async () => {
  ;[azure, gcs] = await Promise.all([startAzure(), startS3('gcs-cli', { gcs: true })])
  container = await azure.container('cli')
}, 60_000)
afterAll(async () => {
  await azure?.close()
  await gcs?.close()
})

const input = async () => {
  const path = join(await tempDir(), 'orders.csv')
  const text = `id,customer,amount\n${Array.from({ length: 20_000 }, (_, i) => `${i + 1},c${i % 7},${(i * 7) % 1000}.25`).join('\n')}\n`
  await writeFile(path, text)
  return { path, text }
}
const azureEnv = () => ({ AZURE_STORAGE_CONNECTION_STRING: azure.connectionString })
const gcsEnv = { GCS_HMAC_ACCESS_KEY_ID: 'S3RVER', GCS_HMAC_SECRET: 'S3RVER' }

describe('CLI --to az:// and gs://', () => {
  it('az://container/blob: the export lands as a blob and --presign prints a link that downloads it', async () => {
    const { path, text } = await input()
    const run = await runCli(['--from', path, '--to', 'az://cli/orders/out.csv.gz', '--presign', '1h'], azureEnv())
    expect(run.stderr).not.toMatch(/error/i)
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/exported 20,000 rows \(.*\) to az:\/\/cli\/orders\/out\.csv\.gz in/)
    const url = /^(http\S+)$/m.exec(run.stdout)![1]!
    const download = Buffer.from(await (await fetch(url)).arrayBuffer())
    expect(gunzipSync(download).toString()).toBe(text)
    expect(download.equals(await container.getBlockBlobClient('orders/out.csv.gz').downloadToBuffer())).toBe(true)
  })

  it('az:// split output: parts and a manifest in the container', async () => {
    const { path } = await input()
    const run = await runCli(['--from', path, '--to', 'az://cli/split/orders.csv', '--split-rows', '8000', '--json'], azureEnv())
    expect(run.code).toBe(0)
    const result = JSON.parse(run.stdout) as { parts: Array<{ rows: number; location: { blob: string } }>; location: { blob: string } }
    expect(result.parts.map((p) => p.rows)).toEqual([8000, 8000, 4000])
    expect(result.location.blob).toBe('split/orders.manifest.json')
    expect(JSON.parse((await container.getBlockBlobClient('split/orders.manifest.json').downloadToBuffer()).toString())).toMatchObject({ rows: 20_000 })
  })

  it('verify az:// and gs://: exit 0 when every byte is as the manifest records, 1 naming a changed blob; one blob needs --expect', async () => {
    const { path } = await input()
    expect((await runCli(['--from', path, '--to', 'az://cli/verify/orders.csv', '--split-rows', '8000'], azureEnv())).code).toBe(0)
    const good = await runCli(['verify', 'az://cli/verify/orders.manifest.json'], azureEnv())
    expect(good.stderr).toBe('')
    const manifest = JSON.parse((await container.getBlockBlobClient('verify/orders.manifest.json').downloadToBuffer()).toString()) as {
      parts: Array<{ name: string; bytes: number }>
    }
    expect(good.stdout).toBe(manifest.parts.map((p) => `ok   az://cli/verify/${p.name} (${p.bytes} bytes)\n`).join(''))
    expect(good.code).toBe(0)
    const part = container.getBlockBlobClient(`verify/${manifest.parts[1]!.name}`)
    const bytes = await part.downloadToBuffer()
    bytes[10] ^= 1
    await part.upload(bytes, bytes.length)
    const bad = await runCli(['verify', 'az://cli/verify/orders.manifest.json'], azureEnv())
    expect(bad.stdout.split('\n')[1]).toMatch(new RegExp(`^BAD {2}az://cli/verify/${manifest.parts[1]!.name}: sha256: `))
    expect(bad.code).toBe(1)

    const one = await runCli(['--from', path, '--to', 'az://cli/verify/one.csv', '--json'], azureEnv())
    const { checksum } = JSON.parse(one.stdout) as { checksum: { value: string } }
    expect((await runCli(['verify', 'az://cli/verify/one.csv', '--expect', checksum.value], azureEnv())).code).toBe(0)
    const unsure = await runCli(['verify', 'az://cli/verify/one.csv'], azureEnv())
    expect(unsure.stderr).toMatch(/the store keeps none/)
    expect(unsure.code).toBe(2)
    const endpoint = await runCli(['verify', 'az://cli/verify/one.csv', '--expect', checksum.value, '--endpoint', gcs.endpoint], azureEnv())
    expect(endpoint.stderr).toMatch(/--endpoint is for S3-compatible stores, not az:\/\//)
    expect(endpoint.code).toBe(2)

    const to = ['--to', 'gs://gcs-cli/verify/orders.csv', '--endpoint', gcs.endpoint]
    expect((await runCli(['--from', path, ...to, '--split-rows', '8000'], gcsEnv)).code).toBe(0)
    const gs = await runCli(['verify', 'gs://gcs-cli/verify/orders.manifest.json', '--endpoint', gcs.endpoint], gcsEnv)
    expect(gs.stdout).toMatch(/^(ok {3}gs:\/\/gcs-cli\/verify\/orders-[^ ]+\.csv \(\d+ bytes\)\n){3}$/)
    expect(gs.code).toBe(0)
  })

  it('gs://bucket/key through the XML API (--endpoint: the test server with GCS rules): the object and its link', async () => {
    const { path, text } = await input()
    const run = await runCli(['--from', path, '--to', 'gs://gcs-cli/orders.csv', '--endpoint', gcs.endpoint, '--presign', '30m'], gcsEnv)
    expect(run.stderr).not.toMatch(/error/i)
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/to gs:\/\/gcs-cli\/orders\.csv in/)
    expect(run.stdout).not.toMatch(/crc64/)
    const url = /^(http\S+)$/m.exec(run.stdout)![1]!
    expect(await (await fetch(url)).text()).toBe(text)
  })

  it("a SAS URL's format comes from the blob's name, not its query", async () => {
    const sas = 'https://acct.blob.core.windows.net/exports/orders.csv.gz?sv=2026-10-06&sig=a%3D'
    expect(await parse(['--query', 'select 1', '--to', sas], process.stdin)).toMatchObject({ format: 'csv', compression: 'gzip' })
    expect(await parse(['--query', 'select 1', '--to', sas.replace('orders.csv.gz', 'orders.parquet')], process.stdin)).toMatchObject({ format: 'parquet' })
  })

  it('refuses before any row: gs:// with a checksum or --no-clobber or without its keys, az:// without its connection string', async () => {
    const { path } = await input()
    const to = ['--from', path, '--to']
    const refusals = [
      [[...to, 'gs://gcs-cli/x.csv', '--checksum', 'crc32c'], gcsEnv, /--checksum: gs:\/\/ takes none/],
      [[...to, 'gs://gcs-cli/x.csv', '--no-clobber'], gcsEnv, /--no-clobber: GCS ignores conditional writes/],
      [[...to, 'gs://gcs-cli/x.csv', '--endpoint', gcs.endpoint], { GCS_HMAC_ACCESS_KEY_ID: '' }, /needs \$GCS_HMAC_ACCESS_KEY_ID/],
      [[...to, 'az://cli/x.csv'], { AZURE_STORAGE_CONNECTION_STRING: '' }, /needs \$AZURE_STORAGE_CONNECTION_STRING/],
      [[...to, 'az://cli'], azureEnv(), /expected az:\/\/container\/blob/],
      [[...to, 'az://cli/x.csv', '--endpoint', gcs.endpoint], azureEnv(), /--endpoint is for S3-compatible stores/],
      [[...to, 'https://example.com/x.csv'], {}, /an https URL must be an Azure blob's/],
      [[...to, 'https://acct.blob.core.windows.net/cli?sv=1&sig=secret'], {}, /an https URL must be an Azure blob's.*\?\.\.\./],
      [[...to, 'https://acct.blob.core.windows.net/cli/x.csv?sv=1&sig=secret', '--presign', '1h'], {}, /a SAS URL cannot sign links/],
      [
        [...to, 'http://acct.blob.core.windows.net/cli/x.csv?sv=1&sig=TOPSECRET'],
        {},
        /--to: expected a file, s3:\/\/.*got "http:\/\/acct\.blob\.core\.windows\.net\/cli\/x\.csv\?\.\.\."/,
      ],
      [[...to, 'HTTPS://example.com/x.csv'], {}, /an https URL must be an Azure blob's/],
      [[...to, 'az://cli/x.csv'], { AZURE_STORAGE_CONNECTION_STRING: 'garbage' }, /\$AZURE_STORAGE_CONNECTION_STRING: /],
      [[...to, 'az://cli/../other/x.csv'], azureEnv(), /has a '\.' or '\.\.' segment/],
    ] as const
    for (const [args, env, message] of refusals) {
      const run = await runCli([...args], env)
      expect(run.stderr).toMatch(message)
      expect(run.stderr + run.stdout).not.toMatch(/TOPSECRET/)
      expect(run.code).toBe(2)
    }
    expect(await gcs.exists('x.csv')).toBe(false)
    expect(await container.getBlockBlobClient('x.csv').exists()).toBe(false)
    expect(await readFile(path, 'utf8')).toContain('id,customer')
  })
})
