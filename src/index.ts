export { exportStream, type ExportOptions, type ExportResult } from './export-stream.js'
export type { SplitOptions } from './split-export.js'
export type {
  ColumnType,
  ContentInfo,
  Discardable,
  FormatInfo,
  Formatter,
  Location,
  Manifest,
  PartInfo,
  Row,
  RowEncoder,
  Sink,
  SinkInfo,
  SourceExtras,
  SplitSink,
  EncodedRows,
  RowBatch,
  TextEncoding,
} from './types.js'
export { ENCODED_ROWS, encodedRows, ROW_BATCH, rowBatch, isRowBatch } from './types.js'
export { ExportError, type ExportErrorCode, type ExportStage } from './errors.js'
export { fromIterable, type RowIterable } from './sources/iterable.js'
export { postgresSource, type PostgresSource, type PostgresSourceOptions } from './sources/postgres.js'
export { postgresKeysetSource, type PostgresKeysetSource, type PostgresKeysetSourceOptions } from './sources/postgres-keyset.js'
export { planShards, type PlanShardsOptions, type ShardRange } from './sources/postgres-shards.js'
export { postgresShardedSource, type PostgresShardedSource, type PostgresShardedSourceOptions } from './sources/postgres-sharded.js'
export { mongoShardedSource, type MongoShardedSourceOptions } from './sources/mongo-sharded.js'
export type { ShardedReadable } from './sources/sharded-readable.js'
export {
  postgresIncrementalSource,
  type IncrementalWatermark,
  type PostgresIncrementalSource,
  type PostgresIncrementalSourceOptions,
} from './sources/postgres-incremental.js'
export {
  mongoIncrementalSource,
  type MongoIncrementalSource,
  type MongoIncrementalSourceOptions,
  type MongoIncrementalWatermark,
} from './sources/mongo-incremental.js'
export { incrementalExport, type IncrementalExportOptions } from './incremental-export.js'
export { fileWatermarkStore, postgresWatermarkStore, redisWatermarkStore, type RedisLike, type WatermarkStore } from './watermark-store.js'
export { postgresCopySource, type PostgresCopySource, type PostgresCopySourceOptions } from './sources/postgres-copy.js'
export { mongoSource, type MongoSource, type MongoSourceOptions, type MongoCursorLike, type MongoCollectionLike } from './sources/mongo.js'
export type { KeysetReadable } from './sources/keyset-pages.js'
export { csvSource, type CsvSource, type CsvSourceOptions } from './sources/csv-file.js'
export { jsonlSource, type JsonlSource, type JsonlSourceOptions } from './sources/jsonl-file.js'
export type { FileInputOptions, FileInputProgress } from './sources/file-input.js'
export type { PgClient, PgPool, PostgresConnectionOptions } from './sources/postgres-connection.js'
export { csv, type CsvOptions, type CsvColumn } from './formats/csv.js'
export { jsonl } from './formats/jsonl.js'
export { jsonArray } from './formats/json-array.js'
export { parquet, type ParquetOptions, type ParquetCodec } from './formats/parquet.js'
export { xlsx, XLSX_MAX_ROWS, XLSX_MAX_CELL_CHARS, XLSX_MAX_COLUMNS, type XlsxOptions } from './formats/xlsx.js'
export type { Column, ColumnsOption } from './formats/columns.js'
export type { BinaryEncoding, JsonOptions } from './formats/values.js'
export { gzip, type GzipOptions } from './stages/gzip.js'
export { mapRows, type RowTransform } from './stages/map-rows.js'
export { progress, type Progress, type ProgressOptions, type ProgressTap } from './stages/progress.js'
export { fileSink, type FileSinkOptions } from './sinks/file.js'
export { s3Sink, type S3Sink, type S3SinkOptions, type S3Location, type S3ClientLike } from './sinks/s3.js'
export { presignDownload, exportKey, attachment, type PresignDownloadOptions, type ExportKeyOptions } from './sinks/presign.js'
