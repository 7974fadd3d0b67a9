// Inputs that must be refused with a typed ExportError, and failures that must be typed by the
// stage they belong to — never a plain error, a crash or a silent default.
import { once } from 'node:events'
import { createServer, get } from 'node:http'
import { Writable } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import { attachment, csv, ExportError, exportStream, fromIterable, jsonl, progress } from '../src/index.js'
import { verifyWebhook } from '../src/bullmq.js'
import { collector } from './helpers.js'

const failure = async (run: () => unknown): Promise<ExportError> => {
  try {
    await run()
  } catch (error) {
    return error as ExportError
  }
  throw new Error('expected a failure')
}

describe('exportStream refuses what it cannot honour', () => {
  it('gzip accepts only a boolean, options or a Transform', async () => {
    for (const gzip of [0, null, '', 'no', 1, []]) {
      const error = await failure(() => exportStream({ source: [{ a: 1 }], format: csv(), gzip: gzip as never, sink: collector() }))
      expect(error).toBeInstanceOf(ExportError)
      expect(error.code).toBe('ERR_INVALID_OPTION')
      expect(error.message).toContain('`gzip`')
    }
  })

  it('a progress interval a timer cannot keep is refused', async () => {
    const error = await failure(() => exportStream({ source: [], format: csv(), sink: collector(), progressIntervalMs: 2 ** 31 }))
    expect(error.code).toBe('ERR_INVALID_OPTION')
    expect(() => progress({ intervalMs: 2 ** 31 })).toThrow(ExportError)
  })

  it('an iterable whose iterator throws on creation: ERR_SOURCE with the cause', async () => {
    const cause = new Error('no cursor today')
    const rows = {
      [Symbol.asyncIterator]: () => {
        throw cause
      },
    }
    const error = await failure(() => exportStream({ source: rows as never, format: csv(), sink: collector() }))
    expect(error).toBeInstanceOf(ExportError)
    expect(error.code).toBe('ERR_SOURCE')
    expect(error.cause).toBe(cause)
  })

  it('an options object whose getter throws: ERR_INVALID_OPTION with the cause', async () => {
    const cause = new Error('getter')
    const options = {
      source: [],
      format: csv(),
      sink: collector(),
      get onProgress(): never {
        throw cause
      },
    }
    const error = await failure(() => exportStream(options))
    expect(error.code).toBe('ERR_INVALID_OPTION')
    expect(error.cause).toBe(cause)
  })

  it('a sink whose write throws synchronously fails the export with ERR_SINK instead of crashing', async () => {
    const sink = new Writable({
      write() {
        throw new Error('disk on fire')
      },
    })
    const error = await failure(() => exportStream({ source: [{ a: 1 }], format: jsonl(), sink }))
    expect(error.code).toBe('ERR_SINK')
    expect((error.cause as Error).message).toBe('disk on fire')
  })

  it('attachment() refuses a name that is not a string', () => {
    expect(() => attachment(5 as never)).toThrow(ExportError)
  })
})

describe('one signal shared by many exports', () => {
  const warnings: Error[] = []
  const onWarning = (warning: Error) => warnings.push(warning)
  afterEach(() => void process.off('warning', onWarning))

  it('fifty exports on one AbortSignal: no MaxListenersExceededWarning, and one abort stops them all', async () => {
    process.on('warning', onWarning)
    const controller = new AbortController()
    async function* endless() {
      for (let i = 0; ; i++) {
        yield { i }
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
    }
    const exports = Array.from({ length: 50 }, () =>
      exportStream({ source: fromIterable(endless()), format: jsonl(), sink: collector(), signal: controller.signal }).catch((e) => e),
    )
    await new Promise((resolve) => setTimeout(resolve, 50))
    controller.abort(new Error('stop all'))
    const errors = await Promise.all(exports)
    expect(errors.every((e) => e.code === 'ERR_ABORTED' && e.cause.message === 'stop all')).toBe(true)
    await new Promise((resolve) => setImmediate(resolve))
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([])
  })
})

describe('an HTTP response as the sink', () => {
  it('a client that disconnects mid-download is ERR_SINK', async () => {
    let result: Promise<unknown> | undefined
    const server = createServer((_req, res) => {
      async function* rows() {
        for (let i = 0; ; i++) {
          yield { i, text: 'x'.repeat(200) }
          if (i % 100 === 0) await new Promise((resolve) => setTimeout(resolve, 1))
        }
      }
      result = exportStream({ source: fromIterable(rows()), format: jsonl(), sink: res }).catch((e) => e)
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const { port } = server.address() as { port: number }
    try {
      const request = get(`http://127.0.0.1:${port}/`)
      const [response] = (await once(request, 'response')) as [NodeJS.ReadableStream]
      await once(response, 'data') // the download has started
      request.destroy() // the user closed the tab
      const error = (await result) as ExportError
      expect(error.code).toBe('ERR_SINK')
      expect(error.stage).toBe('sink')
    } finally {
      server.closeAllConnections()
      server.close()
    }
  })
})

describe('verifyWebhook', () => {
  const secret = 's3cret'
  const body = '{"event":"export.completed"}'
  it('a missing signature or timestamp is false, not a TypeError', () => {
    const timestamp = String(Math.floor(Date.now() / 1000))
    expect(verifyWebhook({ secret, body, signature: undefined, timestamp })).toBe(false)
    expect(verifyWebhook({ secret, body, signature: 'sha256=00', timestamp: undefined })).toBe(false)
  })

  it('refuses a tolerance that is not a positive number and an empty secret', () => {
    const old = String(Math.floor(Date.now() / 1000) - 10 * 86_400)
    for (const toleranceSeconds of [Number.NaN, -1, 0, Infinity]) {
      expect(() => verifyWebhook({ secret, body, signature: 'sha256=00', timestamp: old, toleranceSeconds })).toThrow(ExportError)
    }
    expect(() => verifyWebhook({ secret: '', body, signature: 'sha256=00', timestamp: old })).toThrow(ExportError)
  })
})
