// Every use of pg, pg-query-stream, pg-cursor and pg-copy-streams beyond their documented API, in
// one place: the cursor's state and row description, the row-description hook of a submitted
// query, the protocol callbacks pg calls on a submitted COPY, and pg's own parameter conversion.
// test/sources/pg-adapter.test.ts checks each of them on real instances against a real server, so
// that an upgrade which removes or renames one fails there, naming it.
import pg from 'pg'
import pgUtils from 'pg/lib/utils.js'
import copyStreams from 'pg-copy-streams'
import QueryStream from 'pg-query-stream'
import type { Row } from '../../core/types.js'
import type { PgField } from './types.js'

/** A value as an SQL literal, as pg would send it as a parameter (COPY takes no bind parameters). */
export function sqlLiteral(value: unknown): string {
  // pg/lib/utils.js (declared in pg-internals.d.ts): Dates, arrays, Buffers and toPostgres as pg converts them.
  const prepared = pgUtils.prepareValue(value)
  if (prepared === null || prepared === undefined) return 'NULL'
  if (Buffer.isBuffer(prepared)) return `'\\x${prepared.toString('hex')}'::bytea`
  return pg.escapeLiteral(String(prepared))
}

/** A pg RowDescription message, as pg hands it to the submitted query. */
export interface RowDescription {
  fields: PgField[]
}

/** What the cursor source reads of pg-cursor's Cursor (pg-query-stream types it as `any`). */
export interface PgCursor {
  /** `'error'` once the query or a read failed: there is then no portal to close. */
  state: string
  /** The result pg builds the rows with; its `fields` come from the row description. */
  _result: { fields: PgField[] }
  /** Reads asked for before the row description arrived: pg-cursor sends their Execute once it does. */
  _queue: unknown[]
  read(rows: number, callback: (error: Error | undefined, rows: Row[]) => void): void
}

/**
 * pg-query-stream's QueryStream with typed access to its cursor, and a hook on the row description
 * before pg builds rows from it. Submit it with `client.query(stream)`.
 */
export class CursorStream extends QueryStream {
  constructor(text: string, values: unknown[], config: QueryStream.Config & { batchSize: number }) {
    super(text, values, config)
    // QueryStream binds the cursor's protocol handlers to each instance in its constructor, so the
    // row description is only reached by replacing that instance's handler, here.
    const describe = this.handleRowDescription as (message: RowDescription) => void
    this.handleRowDescription = (message: RowDescription) => describe({ ...message, fields: this.describeFields(message.fields) })
  }

  /** The fields pg builds the rows with (their names are the rows' keys). Default: as the server sent them. */
  protected describeFields(fields: PgField[]): PgField[] {
    return fields
  }

  /** Reads the next `rows` rows of the cursor (one round trip); fewer than asked: the last page. */
  protected readPage(rows: number, callback: (error: Error | undefined, rows: Row[]) => void): void {
    ;(this.cursor as PgCursor).read(rows, callback)
  }

  /**
   * Forgets the reads asked for before the row description. pg-cursor sends a queued read's
   * Execute when the row description arrives, even after close() has sent Close and Sync: that
   * Execute then fails ("portal does not exist") on a client already back in its pool, which
   * emits the failure as the pool's 'error' (a crash when nobody listens). Called before closing.
   */
  protected dropQueuedReads(): void {
    ;(this.cursor as PgCursor)._queue.length = 0
  }

  /** Whether the query or a read failed (the connection may be dead; there is no cursor to close). */
  protected get cursorFailed(): boolean {
    return (this.cursor as PgCursor).state === 'error'
  }

  /** The row description's fields, once it has arrived (after `describeFields`); empty before. */
  protected get describedFields(): PgField[] {
    return (this.cursor as Partial<PgCursor>)._result?.fields ?? []
  }
}

/** The protocol callbacks of pg-copy-streams' stream that its type declarations leave out. */
interface CopyProtocol {
  handleError(error: Error): void
  handleCommandComplete(message: unknown): void
}

/**
 * A `COPY ... TO STDOUT` as pg submits it (`client.query(copyOut)`): pg-copy-streams' stream does the
 * protocol, and this says when the server is ready again, which is after the command tag (the row
 * count, `stream.rowCount`) has arrived. pg calls these `handle*` methods on the query it runs.
 */
export class CopyOut {
  readonly stream: ReturnType<typeof copyStreams.to>
  readonly completed: Promise<void>
  #ready = () => {}

  constructor(sql: string) {
    this.stream = copyStreams.to(sql)
    this.completed = new Promise((resolve) => (this.#ready = resolve))
  }

  submit(connection: unknown): void {
    this.stream.submit(connection as never)
  }
  handleError(error: Error): void {
    ;(this.stream as unknown as CopyProtocol).handleError(error)
  }
  handleCommandComplete(message: unknown): void {
    ;(this.stream as unknown as CopyProtocol).handleCommandComplete(message)
  }
  handleReadyForQuery(): void {
    this.#ready()
  }
}
