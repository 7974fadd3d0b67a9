export { exportStream, type ExportOptions, type ExportResult } from './pipeline/export-stream.js'
export { exportWorkbook, type WorkbookOptions, type WorkbookResult, type WorkbookSheet } from './pipeline/workbook.js'
export { estimateExport, type EstimateOptions, type ExportEstimate } from './pipeline/estimate.js'
export type { SplitOptions } from './parts/split-options.js'
export type { PartitionBy, PartitionFunction, PartitionOptions } from './parts/partition-options.js'
export type { PartitionCheckpoint, PartitionCheckpointOptions, SavedPartition } from './parts/partition-checkpoint.js'
export type { ChecksumAlgorithm, ObjectChecksum } from './core/checksum.js'
export {
  verifyExport,
  type BlobRef,
  type ExpectedChecksum,
  type VerifyLocation,
  type VerifyOptions,
  type VerifyResult,
  type VerifiedObject,
} from './verify/verify-export.js'
export type {
  ColumnType,
  CommitHook,
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
  PartStore,
  EncodedRows,
  RowBatch,
  TextEncoding,
  CompressionName,
  StageTelemetry,
  TelemetryAttributes,
} from './core/types.js'
export type { ExportLogger } from './telemetry/logger.js'
export { ENCODED_ROWS, encodedRows, ROW_BATCH, rowBatch, isRowBatch } from './core/types.js'
export { ExportError, type ExportErrorCode, type ExportStage } from './core/errors.js'
export { fromIterable, type RowIterable } from './sources/iterable.js'
export { postgresSource, type PostgresSource, type PostgresSourceOptions } from './sources/postgres/query.js'
export { postgresKeysetSource, type PostgresKeysetSource, type PostgresKeysetSourceOptions } from './sources/postgres/keyset.js'
export { mysqlSource, MysqlSource, type MysqlSourceOptions } from './sources/mysql/query.js'
export { mysqlKeysetSource, type MysqlKeysetSource, type MysqlKeysetSourceOptions } from './sources/mysql/keyset.js'
export {
  mysqlIncrementalSource,
  type MysqlIncrementalSource,
  type MysqlIncrementalSourceOptions,
  type MysqlIncrementalWatermark,
} from './sources/mysql/incremental.js'
export { planShards, type PlanShardsOptions, type ShardRange } from './shards/plan.js'
export { postgresShardedSource, type PostgresShardedSource, type PostgresShardedSourceOptions } from './shards/postgres.js'
export { mongoShardedSource, type MongoShardedSourceOptions } from './shards/mongo.js'
export type { ShardedReadable } from './shards/readable.js'
export {
  postgresIncrementalSource,
  type IncrementalWatermark,
  type PostgresIncrementalSource,
  type PostgresIncrementalSourceOptions,
} from './sources/postgres/incremental.js'
export {
  mongoIncrementalSource,
  type MongoIncrementalSource,
  type MongoIncrementalSourceOptions,
  type MongoIncrementalWatermark,
} from './sources/mongo/incremental.js'
export { incrementalExport, type IncrementalExportOptions } from './pipeline/incremental.js'
export { fileWatermarkStore, postgresWatermarkStore, redisWatermarkStore, type RedisLike, type WatermarkStore } from './pipeline/watermark-store.js'
export { postgresCopySource, type PostgresCopySource, type PostgresCopySourceOptions } from './sources/postgres/copy.js'
export { mongoSource, type MongoSource, type MongoSourceOptions, type MongoCursorLike, type MongoCollectionLike } from './sources/mongo/query.js'
export type { KeysetReadable } from './sources/keyset-pages.js'
export { csvSource, type CsvSource, type CsvSourceOptions } from './sources/files/csv.js'
export { CSV_COLUMN_TYPES, type CsvColumnType } from './sources/files/csv-types.js'
export { jsonlSource, type JsonlSource, type JsonlSourceOptions } from './sources/files/jsonl.js'
export type { FileInputOptions, FileInputProgress } from './sources/files/input.js'
export type { PgClient, PgPool, PostgresConnectionOptions, PostgresGuardOptions } from './sources/postgres/connection.js'
export { csv, type CsvOptions, type CsvColumn } from './formats/csv.js'
export { jsonl } from './formats/jsonl.js'
export { jsonArray } from './formats/json-array.js'
export { parquet, type ParquetOptions, type ParquetCodec } from './formats/parquet/index.js'
export { xlsx, XLSX_MAX_ROWS, XLSX_MAX_CELL_CHARS, XLSX_MAX_COLUMNS, type SheetSummary, type XlsxOptions } from './formats/xlsx/index.js'
export type { Column, ColumnsOption } from './formats/columns.js'
export type { BinaryEncoding, JsonOptions } from './formats/values.js'
export { gzip, type GzipOptions } from './stages/gzip.js'
export { zstd, type ZstdOptions } from './stages/zstd.js'
export type { CompressionOption } from './pipeline/compression.js'
export { mapRows, type RowTransform } from './stages/map-rows.js'
export { progress, type Progress, type ProgressOptions, type ProgressTap } from './stages/progress.js'
export { fileSink, type FileSinkOptions } from './sinks/file.js'
export { s3Sink, type S3Sink, type S3SinkOptions, type S3Location, type S3ClientLike } from './sinks/s3/sink.js'
export { presignDownload, exportKey, attachment, sseCustomerHeaders, type PresignDownloadOptions, type ExportKeyOptions } from './sinks/s3/presign.js'
export { gcsClient, type GcsClient, type GcsClientOptions } from './sinks/s3/gcs.js'
export { azureBlobSink, type AzureBlobSink } from './sinks/azure/sink.js'
export type { AzureBlobSinkOptions, AzureBlobClientSinkOptions, AzureBlobWriteOptions } from './sinks/azure/options.js'
export type { AzureLocation, AzureContainerLike, AzureBlobLike } from './sinks/azure/client.js'
export {
  azureResumableUpload,
  type AzureResumableUpload,
  type AzureResumableUploadOptions,
  type AzureResumableBlobClientOptions,
  type AzureCheckpoint,
} from './sinks/azure/resumable.js'
export { azureDownloadUrl, type AzureDownloadUrlOptions } from './sinks/azure/sas.js'
export { keyFromTemplate, fileNameFromTemplate, type NameContext } from './delivery/names.js'
export { notifyEmail, exportEmail, type EmailNotifierOptions, type EmailContent, type MailMessage, type MailTransport } from './delivery/email.js'
export {
  postgresExportLog,
  exportLogMigration,
  type ExportLog,
  type ExportLogEntry,
  type NewExportLogEntry,
  type LeasedEntry,
  type LeaseOutcome,
  type PostgresExportLogOptions,
} from './delivery/export-log.js'
export { presignEntry, type Link, type LinkSigner } from './delivery/links.js'
export { exportIdOf, fingerprintOf, EXPIRY_TAG } from './delivery/deliver.js'
export { createExpiryProcessor, type ExpiryOptions, type ExpiryResult } from './delivery/expiry.js'
