export function handler(event: { Records?: Array<{ messageId: string; body: string }> }): Promise<{
  batchItemFailures: Array<{ itemIdentifier: string }>
  results: Array<{ jobId: string; rows: number; url: string }>
}>
