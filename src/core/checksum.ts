// Full-object checksums: the CRCs S3 verifies at the commit point (CRC64NVME, CRC32C, CRC32),
// computed while the bytes stream, per part, and combined into the checksum of the whole object
// without reading any byte twice (a resumed job's earlier parts included). The CRCs themselves
// are the AWS SDK's (@aws-sdk/checksums); combining two CRCs is the GF(2) arithmetic of zlib's
// crc32_combine, generalised to 64 bits.
import { Crc32, Crc32c, Crc64Nvme } from '@aws-sdk/checksums/crc'
import { invalidOption } from './errors.js'

/** The full-object checksums S3 verifies at CompleteMultipartUpload (and PutObject). */
export type ChecksumAlgorithm = 'CRC64NVME' | 'CRC32C' | 'CRC32'

export const CHECKSUM_ALGORITHMS: readonly ChecksumAlgorithm[] = ['CRC64NVME', 'CRC32C', 'CRC32']

/** The checksum of every byte of an object (or of a part): S3's full-object type. */
export interface ObjectChecksum {
  algorithm: ChecksumAlgorithm
  /** Base64 of the big-endian CRC, as S3 shows it (`x-amz-checksum-crc64nvme`). */
  value: string
  /** The bytes it covers. */
  bytes: number
  /**
   * The store checked it against the bytes it holds and answered with the same value (S3 does at
   * CompleteMultipartUpload and PutObject). `false`: the store did not say (it ignores checksums,
   * as Ceph RGW 16 does), and only this library computed it. Absent for files.
   */
  verifiedByStore?: boolean
}

/** Checks a `checksum` option: an algorithm, or `false` for none. Default CRC64NVME. */
export function checkChecksumOption(name: string, value: unknown): ChecksumAlgorithm | false {
  if (value === undefined) return 'CRC64NVME'
  if (value === false || CHECKSUM_ALGORITHMS.includes(value as ChecksumAlgorithm)) return value as ChecksumAlgorithm | false
  return invalidOption(name, `one of ${CHECKSUM_ALGORITHMS.join(', ')}, or false`, value)
}

interface Hash {
  update(data: Uint8Array): void
  digest(): Promise<Uint8Array>
}
const HASHES: Record<ChecksumAlgorithm, () => Hash> = { CRC64NVME: () => new Crc64Nvme(), CRC32C: () => new Crc32c(), CRC32: () => new Crc32() }

/** The running checksum of bytes as they pass. */
export class Checksummer {
  readonly #hash: Hash
  #bytes = 0

  constructor(readonly algorithm: ChecksumAlgorithm) {
    this.#hash = HASHES[algorithm]()
  }

  update(chunk: Uint8Array): void {
    this.#hash.update(chunk)
    this.#bytes += chunk.length
  }

  /** The checksum of every byte so far. */
  async digest(): Promise<ObjectChecksum> {
    const value = Buffer.from(await this.#hash.digest()).toString('base64')
    return { algorithm: this.algorithm, value, bytes: this.#bytes }
  }
}

/** The checksum of `bytes` in one go. */
export function checksumOf(algorithm: ChecksumAlgorithm, bytes: Uint8Array): Promise<ObjectChecksum> {
  const checksummer = new Checksummer(algorithm)
  checksummer.update(bytes)
  return checksummer.digest()
}

// Reflected polynomials (bit i of the CRC is the coefficient of x^(width-1-i)).
const POLYNOMIALS: Record<ChecksumAlgorithm, { width: bigint; poly: bigint }> = {
  CRC64NVME: { width: 64n, poly: 0x9a6c9329ac4bc9b5n },
  CRC32C: { width: 32n, poly: 0x82f63b78n },
  CRC32: { width: 32n, poly: 0xedb88320n },
}

// a(x) b(x) modulo the polynomial, in the reflected representation (zlib's multmodp).
function multiply(a: bigint, b: bigint, width: bigint, poly: bigint): bigint {
  let m = 1n << (width - 1n)
  let product = 0n
  for (;;) {
    if (a & m) {
      product ^= b
      if ((a & (m - 1n)) === 0n) return product
    }
    m >>= 1n
    b = b & 1n ? (b >> 1n) ^ poly : b >> 1n
  }
}

const powers = new Map<ChecksumAlgorithm, bigint[]>()
// x^(2^k) modulo the polynomial, k = 0..63.
function powersOfTwo(algorithm: ChecksumAlgorithm): bigint[] {
  let table = powers.get(algorithm)
  if (table) return table
  const { width, poly } = POLYNOMIALS[algorithm]
  table = [1n << (width - 2n)] // x^1
  for (let k = 1; k < 64; k++) table.push(multiply(table[k - 1]!, table[k - 1]!, width, poly))
  powers.set(algorithm, table)
  return table
}

const toBigInt = (value: string): bigint => BigInt(`0x${Buffer.from(value, 'base64').toString('hex') || '0'}`)
const toBase64 = (value: bigint, width: bigint): string => Buffer.from(value.toString(16).padStart(Number(width / 4n), '0'), 'hex').toString('base64')

/** The checksum of the bytes of `first` followed by those of `second` (same algorithm), from theirs alone. */
export function combineChecksums(first: ObjectChecksum, second: ObjectChecksum): ObjectChecksum {
  const { algorithm } = first
  if (second.algorithm !== algorithm) throw new Error(`Cannot combine a ${algorithm} checksum with a ${second.algorithm} one`)
  const { width, poly } = POLYNOMIALS[algorithm]
  const table = powersOfTwo(algorithm)
  // x^(8 * second.bytes): the first CRC shifted past the second's bytes.
  let shift = 1n << (width - 1n) // x^0
  let n = BigInt(second.bytes)
  for (let k = 3; n > 0n; k++, n >>= 1n) if (n & 1n) shift = multiply(table[k]!, shift, width, poly)
  const value = multiply(shift, toBigInt(first.value), width, poly) ^ toBigInt(second.value)
  return { algorithm, value: toBase64(value, width), bytes: first.bytes + second.bytes }
}

/** The checksum of parts' bytes in order, from the parts' checksums (`undefined` for none). */
export function combineAll(parts: readonly ObjectChecksum[]): ObjectChecksum | undefined {
  return parts.length === 0 ? undefined : parts.reduce((whole, part) => combineChecksums(whole, part))
}

/** The checksum of no bytes. */
export const emptyChecksum = (algorithm: ChecksumAlgorithm): Promise<ObjectChecksum> => new Checksummer(algorithm).digest()
