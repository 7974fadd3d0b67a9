// Download links for Azure blobs: a read-only service SAS signed with the account key, with the
// file name the browser saves (the SAS's Content-Disposition override).
import { invalidOption } from '../../core/errors.js'
import { checkObject, checkPositiveInteger, checkString, optionNames } from '../../core/options.js'
import { attachment } from '../s3/presign.js'
import { blockBlob, loadAzure, sdkContainer, type AzureContainerLike } from './client.js'

export interface AzureDownloadUrlOptions {
  /** The blob to link to (an export's `location.blob`). */
  blobName: string
  /** Seconds the link works. Default 86,400 (a day). */
  expiresIn?: number
  /** The name the browser saves the download as (Content-Disposition: attachment). */
  filename?: string
}

const AZURE_DOWNLOAD_OPTION_NAMES = optionNames<AzureDownloadUrlOptions>({ blobName: true, expiresIn: true, filename: true })

/** Whether the container's client holds the account key, which signs a SAS (by its shape: the SDK's ESM and CommonJS builds each have their own class). */
export const canSign = (container: AzureContainerLike): boolean =>
  typeof (sdkContainer(container).credential as { computeHMACSHA256?: unknown }).computeHMACSHA256 === 'function'

/**
 * A read-only SAS URL for a blob: the user downloads straight from Azure, your API never proxies
 * the bytes. The container client must hold the account's key (`StorageSharedKeyCredential`, or
 * a connection string with `AccountKey`): a SAS is signed with it, locally, without a request.
 */
export async function azureDownloadUrl(containerClient: AzureContainerLike, options: AzureDownloadUrlOptions): Promise<string> {
  if (typeof containerClient?.getBlockBlobClient !== 'function') invalidOption('containerClient', "a ContainerClient of '@azure/storage-blob'", containerClient)
  checkObject('options', options, AZURE_DOWNLOAD_OPTION_NAMES)
  const { blobName, expiresIn = 86_400, filename } = options
  checkString('blobName', blobName)
  checkPositiveInteger('expiresIn', expiresIn)
  // (A SAS's expiry is a date: past year 9999 it cannot be written, and Azure refuses the link.)
  if (Date.now() + expiresIn * 1000 >= Date.UTC(10_000, 0)) invalidOption('expiresIn', 'seconds that end before the year 10000', expiresIn)
  const { BlobSASPermissions } = loadAzure()
  if (!canSign(containerClient))
    invalidOption(
      'containerClient',
      'a client with the account key (StorageSharedKeyCredential or a connection string with AccountKey) to sign a SAS',
      'another credential',
    )
  return blockBlob(containerClient, blobName).generateSasUrl({
    permissions: BlobSASPermissions.parse('r'),
    expiresOn: new Date(Date.now() + expiresIn * 1000),
    ...(filename !== undefined && { contentDisposition: attachment(filename) }),
  })
}
