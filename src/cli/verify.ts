// `stream-export verify <manifest | s3:// | gs:// | az:// | file>`: reads back what an export stored
// and compares it with its manifest, or with a checksum (--expect, else the one the S3 store keeps).
import { parseArgs } from 'node:util'
import { verifyExport } from '../index.js'
import { describeLocation, type VerifyLocation } from '../verify/verify-export.js'
import { CHECKSUM_NAMES, UsageError } from './args.js'
import { azureTarget, gcsFromEnv, s3Client } from './open.js'

export const VERIFY_USAGE = `Usage: stream-export verify <name.manifest.json | s3://bucket/key | gs://bucket/key | az://container/blob | file> [options]

Reads every byte back and compares: a manifest's parts (size, SHA-256, full checksum), or one
file, object or blob with --expect (its export's checksum), else the full-object checksum S3 keeps.
gs:// reads with $GCS_HMAC_ACCESS_KEY_ID and $GCS_HMAC_SECRET, az:// with
$AZURE_STORAGE_CONNECTION_STRING (or give the blob's https URL with a SAS that may read).
  --expect <base64>   the checksum printed by the export (crc64nvme unless --algorithm says)
  --algorithm         crc64nvme | crc32c | crc32
  --endpoint <url>    S3-compatible store URL (s3:// and gs://)
  --json              the result as JSON

Exit codes: 0 every byte as recorded, 1 something differs or is missing, 2 bad arguments,
5 unreadable.`

/** The verify command: its exit code. */
export async function verifyCommand(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        expect: { type: 'string' },
        algorithm: { type: 'string', default: 'crc64nvme' },
        endpoint: { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    })
  } catch (error) {
    throw new UsageError((error as Error).message)
  }
  const { values, positionals } = parsed
  if (values.help) {
    out.write(`${VERIFY_USAGE}\n`)
    return 0
  }
  if (positionals.length !== 1) throw new UsageError('verify takes one manifest, object, blob or file')
  const target = positionals[0]!
  const algorithm = CHECKSUM_NAMES[values.algorithm.toLowerCase()]
  if (!algorithm) throw new UsageError(`--algorithm: expected crc64nvme, crc32c or crc32, got ${JSON.stringify(values.algorithm)}`)
  const expected = values.expect === undefined ? undefined : { algorithm, value: values.expect }
  const azure = azureTarget(target)
  if (azure && values.endpoint !== undefined) throw new UsageError('--endpoint is for S3-compatible stores, not az://')
  const gcs = target.startsWith('gs://')
  const client = target.startsWith('s3://') ? s3Client(values.endpoint) : gcs ? gcsFromEnv(values.endpoint) : undefined
  const where = azure
    ? { target: { container: azure.containerClient.containerName, blob: azure.blobName }, container: azure.containerClient }
    : { target, client }
  // (A GCS object's location is a bucket and a key, as an S3 object's: named here with its own scheme.)
  const describe = (location: VerifyLocation) => (gcs ? describeLocation(location).replace(/^s3:/, 'gs:') : describeLocation(location))
  try {
    const result = await verifyExport({ ...where, expected })
    if (values.json) out.write(`${JSON.stringify(result)}\n`)
    else {
      if (result.problems) out.write(`BAD  ${target.replace(/\?.*$/, '')}: ${result.problems.join('; ')}\n`)
      for (const object of result.objects)
        out.write(
          object.ok ? `ok   ${describe(object.location)} (${object.bytes} bytes)\n` : `BAD  ${describe(object.location)}: ${object.problems.join('; ')}\n`,
        )
    }
    return result.ok ? 0 : 1
  } finally {
    client?.destroy()
  }
}
