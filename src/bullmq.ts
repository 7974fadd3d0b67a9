// stream-export/bullmq: BullMQ processors that run exports to S3 (re-exports only). BullMQ itself
// is the caller's (an optional peer dependency): the processors take structural job types.
export { createExportProcessor, abortFailedExport } from './jobs/processor.js'
export { createShardedExportProcessor } from './jobs/sharded-export.js'
export type {
  ExportJob,
  ExportSpec,
  ExportProcessorOptions,
  ExportJobResult,
  ShardedExportJob,
  ShardedExportProcessorOptions,
  ShardedExportResult,
  ShardedExportSpec,
  ShardedExportState,
  ShardQueue,
  PartitionedJobState,
} from './jobs/types.js'
export { notifyWebhook, verifyWebhook, SIGNATURE_HEADER, TIMESTAMP_HEADER, type ExportNotification, type WebhookOptions } from './delivery/webhook.js'
export { sendExportEvents, type ExportEventsOptions, type JobLookup, type JobEventSource, type EventResponse } from './jobs/job-events.js'
export type { ExportCheckpoint } from './sinks/s3/resumable.js'
export type { SplitShardResult } from './jobs/sharded-split.js'
export type { ShardAssignment, ShardResult } from './sinks/s3/shards.js'
