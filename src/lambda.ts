// stream-export/lambda: an SQS-triggered AWS Lambda handler whose exports continue across
// invocations into one object (re-exports only). No BullMQ here; `@aws-sdk/client-sqs` is an
// optional peer, loaded when the handler is given an SQS client.
export {
  createLambdaExportHandler,
  type LambdaExportHandlerOptions,
  type LambdaContext,
  type SqsBatchResponse,
  type SqsEvent,
  type SqsRecord,
} from './jobs/lambda.js'
export { postgresContinuationStore, type ContinuationStore } from './jobs/continuation-store.js'
export type { ExportJob, ExportSpec, ExportJobResult } from './jobs/types.js'
export type { ExportNotification } from './delivery/webhook.js'
