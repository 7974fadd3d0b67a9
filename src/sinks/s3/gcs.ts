// Google Cloud Storage through its S3-interoperable XML API: an S3Client with HMAC keys at
// storage.googleapis.com, marked as GCS so that every S3 writer (s3Sink, split and partitioned
// output, the job processor's resumable upload) leaves out what GCS refuses: the AWS SDK's
// checksum headers, object tags, Object Lock, conditional writes. See docs/gcs.md.
import { invalidOption } from '../../core/errors.js'
import { checkObject, checkString, optionNames } from '../../core/options.js'
import { loadOptional } from '../../core/optional.js'
import type { S3ClientLike } from './client.js'

export interface GcsClientOptions {
  /** An HMAC key's access id (`GOOG1E...`), of a service account with access to the bucket. */
  accessKeyId: string
  /** The HMAC key's secret. */
  secretAccessKey: string
  /** Default `https://storage.googleapis.com`. */
  endpoint?: string
  /**
   * More settings of the S3Client (`requestHandler` with its timeouts, `maxAttempts`, a logger);
   * the region, endpoint, credentials and checksum settings above are GCS's and win.
   */
  config?: Record<string, unknown>
}

/** The client `gcsClient` makes: an `S3Client` of `@aws-sdk/client-s3` (cast it to one for your own commands). */
export interface GcsClient extends S3ClientLike {
  destroy(): void
}

const GCS_CLIENT_OPTION_NAMES = optionNames<GcsClientOptions>({ accessKeyId: true, secretAccessKey: true, endpoint: true, config: true })
// A registered symbol, not a WeakSet: a client made by one copy of the library (ESM and CommonJS
// loaded side by side) is known to the other.
const GCS = Symbol.for('stream-export.gcs-client')

/**
 * An S3Client for Google Cloud Storage's XML API: give it to `s3Sink`, `presignDownload`,
 * `createExportProcessor` and the Lambda handler as their `client` / `s3`, with the GCS bucket's
 * name as `bucket`. Checksums go only when a request needs one (GCS refuses the SDK's default
 * `x-amz-checksum-*` headers); the writers know the client as GCS's and send none of their own.
 */
export function gcsClient(options: GcsClientOptions): GcsClient {
  checkObject('options', options, GCS_CLIENT_OPTION_NAMES)
  const { accessKeyId, secretAccessKey, endpoint = 'https://storage.googleapis.com', config = {} } = options
  checkObject('config', config)
  checkString('accessKeyId', accessKeyId)
  checkString('secretAccessKey', secretAccessKey)
  checkString('endpoint', endpoint)
  const { S3Client } = loadOptional<typeof import('@aws-sdk/client-s3')>('@aws-sdk/client-s3', '@aws-sdk/client-s3')
  const client = new S3Client({
    ...config,
    region: 'auto',
    endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId, secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  })
  Object.defineProperty(client, GCS, { value: true })
  return client
}

/** Whether `client` was made by `gcsClient`. */
export const isGcsClient = (client: S3ClientLike): boolean => (client as { [GCS]?: boolean })[GCS] === true

/** What GCS's XML API does not take, by option name: refused for a GCS client, never sent and ignored. */
const NOT_ON_GCS: Record<string, string> = {
  tags: 'object tags (GCS has no object tagging; use metadata)',
  objectLock: 'Object Lock headers (GCS retention is set on the bucket or with x-goog headers)',
  overwrite: 'conditional writes (GCS ignores If-None-Match on writes)',
  ifMatch: 'conditional writes (GCS ignores If-Match on writes)',
  serverSideEncryption: 'S3 encryption headers (GCS encrypts every object; CMEK is set on the bucket)',
  sseKmsKeyId: 'S3 encryption headers (GCS encrypts every object; CMEK is set on the bucket)',
  bucketKeyEnabled: 'S3 encryption headers',
  sseCustomerKey: 'S3 customer-key headers',
  expectedBucketOwner: 'x-amz-expected-bucket-owner',
}

/**
 * Refuses, for a GCS client, an option whose header GCS does not take (ERR_INVALID_OPTION naming
 * it). `checksum` may only be `false` (the default there): GCS checks its own CRC32C instead.
 */
export function checkGcsOptions(options: Record<string, unknown>): void {
  for (const [name, why] of Object.entries(NOT_ON_GCS)) {
    const value = options[name]
    if (value === undefined || (name === 'overwrite' && value === true)) continue
    invalidOption(name, `unset with a GCS client: the XML API does not take ${why}`, value)
  }
  if (options.checksum !== undefined && options.checksum !== false)
    invalidOption('checksum', 'false or unset with a GCS client (it refuses x-amz-checksum headers; GCS checks its own CRC32C)', options.checksum)
}
