import type { LambdaContext, SqsBatchResponse, SqsEvent } from 'stream-export/lambda'

export const handler: (event: SqsEvent, context: LambdaContext) => Promise<SqsBatchResponse>
