// Where a job's export goes: S3 (or GCS through its XML API) or an Azure Blob Storage container,
// behind one face, so that the processor, the Lambda handler, partitioned jobs and the delivery
// do the same on each: a plain or resumable upload, a part store, the clean-up of what a crashed
// or failed attempt left, download links.
import type { Writable } from 'node:stream'
import type { ChecksumAlgorithm, ObjectChecksum } from '../core/checksum.js'
import type { PartStore, SegmentSink, Sink, SplitSink } from '../core/types.js'
import type { PartitionTemplate } from '../parts/partition-names.js'
import { runPartOf } from '../parts/partition-checkpoint.js'
import { blockBlob, discardStaged, listBlobs, type AzureContainerLike, type AzureLocation } from '../sinks/azure/client.js'
import { normalizeAzureSinkOptions } from '../sinks/azure/options.js'
import { AzureResumableUpload, type AzureCheckpoint } from '../sinks/azure/resumable.js'
import { azureBlobSink, azurePartStore } from '../sinks/azure/sink.js'
import type { S3ClientLike, S3Location } from '../sinks/s3/client.js'
import { isGcsClient } from '../sinks/s3/gcs.js'
import { abortOtherUploads, abortUploadsUnder, partSizeFor } from '../sinks/s3/multipart.js'
import { ResumableUpload, type ExportCheckpoint } from '../sinks/s3/resumable.js'
import { normalizeS3SinkOptions, s3PartStore, s3Sink } from '../sinks/s3/sink.js'
import { signerOf, type LinkSigner } from '../delivery/links.js'

/** A job's checkpoint in its data: an S3 multipart upload's, or an Azure blob's staged blocks. */
export type JobCheckpoint = ExportCheckpoint | AzureCheckpoint

/** A resumable upload of a job: open() it, then give it to exportStream; pause() ends it at the next cut. */
export interface JobUpload extends Writable, SegmentSink<object> {
  open(): Promise<object | undefined>
  pause(): void
  readonly checksum: ObjectChecksum | undefined
}

export interface JobStore {
  /** The bucket, or the Azure container: what the job's result, its data and the export log call `bucket`. */
  readonly bucket: string
  /** `s3://bucket/key`, `gs://bucket/key` or `az://container/blob` (this store's bucket by default), for messages. */
  describe(key: string, bucket?: string): string
  /** A location as the job's result gives it: `{ bucket, key, etag }` (Azure: the container and the blob). */
  location(location: object): S3Location
  /** The sink of a job's export to `key` (split and partitioned output too); `onStarted` when an upload a crash may leave begins. */
  sink(key: string, options: { tags?: Record<string, string>; onStarted?: (checkpoint: JobCheckpoint) => unknown }): Writable & Sink<object> & SplitSink<object>
  /**
   * What a job saves before a plain export to `key` starts, so that a final failure's clean-up
   * (abortFailedExport too) finds what a killed attempt staged; none where the sink tells itself (S3: onStarted).
   */
  startMarker(key: string): JobCheckpoint | undefined
  /** The parts of an export beside `key` (a partitioned job's manifest and partitions). */
  partStore(key: string): PartStore<object>
  /** A resumable upload to `key`, continuing `checkpoint` when given. */
  resumable(
    key: string,
    options: { contentType?: string; checkpoint?: JobCheckpoint; onCheckpoint(checkpoint: JobCheckpoint): Promise<unknown>; tags?: Record<string, string> },
  ): JobUpload
  /** Removes what uploads to `key` left uncommitted (multipart uploads; staged blocks). */
  clearLeftovers(key: string): Promise<void>
  /** The same for the parts of a partitioned run. */
  clearRunUploads(template: PartitionTemplate, run: string): Promise<void>
  /** A download link to `key` in `bucket` (the export log's), `expiresIn` seconds, saving as `filename`. */
  sign: LinkSigner
}

/** Where the processor's options send a job's export: `s3` + `bucket`, or an Azure `container`. */
export function jobStoreOf(options: { s3?: S3ClientLike; bucket?: string; container?: AzureContainerLike; partSize: number }): JobStore {
  return options.container ? azureJobStore(options.container, options.partSize) : s3JobStore(options.s3!, options.bucket!, options.partSize)
}

export function s3JobStore(s3: S3ClientLike, bucket: string, partSize: number): JobStore {
  const scheme = isGcsClient(s3) ? 'gs' : 's3'
  return {
    bucket,
    describe: (key, where = bucket) => `${scheme}://${where}/${key}`,
    location: (location) => location as S3Location,
    sink: (key, { tags, onStarted }) =>
      s3Sink({
        client: s3,
        bucket,
        key,
        partSize,
        tags,
        ...(onStarted && { onUploadCreated: (uploadId: string) => onStarted({ uploadId, bucket, key, parts: [], rows: 0, bytes: 0 }) }),
      }),
    partStore: (key) => s3PartStore(normalizeS3SinkOptions({ client: s3, bucket, key })),
    startMarker: () => undefined,
    resumable: (key, { checkpoint, ...options }) =>
      new ResumableUpload({
        ...options,
        client: s3,
        bucket,
        key,
        partSize: (n) => partSizeFor(n, partSize),
        checkpoint: checkpoint as ExportCheckpoint | undefined,
        onCheckpoint: options.onCheckpoint,
      }),
    clearLeftovers: (key) => abortOtherUploads({ client: s3, bucket, key }),
    clearRunUploads: (template, run) => {
      const ours = runPartOf(template, run)
      return abortUploadsUnder({ client: s3, bucket }, template.base, ({ Key }) => ours(Key))
    },
    sign: signerOf(s3),
  }
}

export function azureJobStore(container: AzureContainerLike, blockSize: number): JobStore {
  const bucket = container.containerName
  const checksum: ChecksumAlgorithm = 'CRC64NVME'
  return {
    bucket,
    describe: (key, where = bucket) => `az://${where}/${key}`,
    location: (location) => {
      const { container, blob, etag, versionId } = location as AzureLocation
      return { bucket: container, key: blob, ...(etag && { etag }), ...(versionId && { versionId }) }
    },
    // (Tags: blob index tags, as the expiry tag asks.)
    sink: (key, { tags }) => azureBlobSink({ containerClient: container, blobName: key, blockSize, checksum, ...(tags && { tags }) }),
    startMarker: (key) => ({ container: bucket, blob: key, run: '', blocks: [], rows: 0, bytes: 0 }),
    partStore: (key) => azurePartStore(normalizeAzureSinkOptions({ containerClient: container, blobName: key, blockSize, checksum })),
    resumable: (key, { contentType, checkpoint, onCheckpoint, tags }) =>
      new AzureResumableUpload({
        containerClient: container,
        blobName: key,
        blockSize,
        checksum,
        ...(contentType && { contentType }),
        ...(tags && { tags }),
        ...(checkpoint && { checkpoint: checkpoint as AzureCheckpoint }),
        onCheckpoint,
      }),
    clearLeftovers: async (key) => void (await discardStaged(blockBlob(container, key))),
    clearRunUploads: async (template, run) => {
      const ours = runPartOf(template, run)
      for (const name of await listBlobs(container, template.base, true)) if (ours(name)) await discardStaged(blockBlob(container, name))
    },
    sign: signerOf(container),
  }
}
