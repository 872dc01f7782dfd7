// The journal's bytes. Pure functions over Buffers; the file adapter does the I/O.
//
//   header (40 bytes, once, at offset 0)
//     0  magic "LDJL"
//     4  version u16 BE (1)
//     6  header length u16 BE (40)
//     8  generation u32 BE       a new one at each compaction
//    12  file id u32 BE          random, per file: a file put in the place of another is known
//                                as such even when it got the other's inode number back
//    16  from generation u32 BE  compacted from this generation (0: a new journal) ...
//    20  from offset u64 BE      ... whose live entries, up to this offset, are the records
//    28  compacted end u64 BE    up to here: a follower that had read exactly that far skips
//                                them instead of reading the file again whole (no reset)
//    36  crc32c u32 BE of bytes 0..35
//   record (repeated to the end)
//     0  payload length u32 BE
//     4  crc32c u32 BE of the payload
//     8  payload: type u8 (1 put, 2 delete), key length u16 BE, key (UTF-8), value (put: the rest)
//
// A record is trusted only whole and with its checksum: decoding stops at the first one that is
// not (a write torn by a crash, or in progress as a follower reads) and says where and why.
import type { JournalRecord } from './types';

/**
 * CRC-32C (Castagnoli, as iSCSI and ext4 use), eight bytes a step ("slicing-by-8": table k gives
 * a byte's contribution k bytes further on); ~4x the bytewise loop over a lock-sized record.
 * node:zlib's crc32 is another polynomial, and needs Node 20.15.
 */
const CRC32C_TABLES = (() => {
  const t = new Int32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) for (let k = 1; k < 8; k++) t[k * 256 + n] = (t[(k - 1) * 256 + n]! >>> 8) ^ t[t[(k - 1) * 256 + n]! & 0xff]!;
  return t;
})();

/** Of b[start, end): a range, not a subarray, so that checksumming a batch's records allocates nothing. */
export function crc32c(b: Uint8Array, start = 0, end = b.length): number {
  const t = CRC32C_TABLES;
  let c = -1;
  let i = start;
  for (const n8 = end - 8; i <= n8; i += 8) {
    c ^= b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24);
    c = t[1792 + (c & 0xff)]! ^ t[1536 + ((c >>> 8) & 0xff)]! ^ t[1280 + ((c >>> 16) & 0xff)]! ^ t[1024 + (c >>> 24)]! ^ t[768 + b[i + 4]!]! ^ t[512 + b[i + 5]!]! ^ t[256 + b[i + 6]!]! ^ t[b[i + 7]!]!;
  }
  for (; i < end; i++) c = t[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

export const JOURNAL_MAGIC = 'LDJL';
export const JOURNAL_VERSION = 1;
export const HEADER_BYTES = 40;
export const FRAME_BYTES = 8;
/** Type, key length. */
const PAYLOAD_FIXED = 3;
export const MAX_KEY_BYTES = 0xffff;
/** The largest payload: a length field above it is corruption, not a record to wait for. */
export const MAX_PAYLOAD_BYTES = 1 << 20;

const PUT = 1;
const DELETE = 2;

/** A journal this code cannot read at all: not one, or of another version. */
export class JournalFormatError extends Error {
  override readonly name = 'JournalFormatError';
}

export interface JournalHeader {
  generation: number;
  /** Random, per file. */
  fileId: number;
  /** The generation and offset a compaction started from: their live entries are the records up to compactedEnd. */
  from?: { generation: number; offset: number };
  /** End of the compacted records (HEADER_BYTES for a new journal). */
  compactedEnd: number;
}

const u32 = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
const u53 = (n: number): boolean => Number.isSafeInteger(n) && n >= 0;

export function encodeHeader(h: JournalHeader): Buffer {
  if (!u32(h.generation) || h.generation === 0) throw new RangeError(`journal generation ${h.generation} is not a u32 above 0`);
  if (!u32(h.fileId)) throw new RangeError(`journal file id ${h.fileId} is not a u32`);
  if (h.from && (!u32(h.from.generation) || h.from.generation === 0 || !u53(h.from.offset))) throw new RangeError(`bad compaction origin ${JSON.stringify(h.from)}`);
  if (!u53(h.compactedEnd) || h.compactedEnd < HEADER_BYTES) throw new RangeError(`compacted end ${h.compactedEnd} is inside the header`);
  const b = Buffer.alloc(HEADER_BYTES);
  b.write(JOURNAL_MAGIC, 0, 'latin1');
  b.writeUInt16BE(JOURNAL_VERSION, 4);
  b.writeUInt16BE(HEADER_BYTES, 6);
  b.writeUInt32BE(h.generation, 8);
  b.writeUInt32BE(h.fileId, 12);
  b.writeUInt32BE(h.from?.generation ?? 0, 16);
  b.writeBigUInt64BE(BigInt(h.from?.offset ?? 0), 20);
  b.writeBigUInt64BE(BigInt(h.compactedEnd), 28);
  b.writeUInt32BE(crc32c(b.subarray(0, 36)), 36);
  return b;
}

/** The header at the start of `b`. Throws JournalFormatError saying what is wrong. */
export function decodeHeader(b: Buffer): JournalHeader {
  if (b.length === 0) throw new JournalFormatError('empty journal (no header)');
  if (b.length < 6) throw new JournalFormatError(`journal shorter than its header (${b.length} of ${HEADER_BYTES} bytes)`);
  const magic = b.toString('latin1', 0, 4);
  if (magic !== JOURNAL_MAGIC) throw new JournalFormatError(`not a lockdrop journal (starts with ${b.subarray(0, 4).toString('hex')}, not "${JOURNAL_MAGIC}")`);
  const version = b.readUInt16BE(4);
  if (version !== JOURNAL_VERSION) throw new JournalFormatError(`unknown journal version ${version} (this lockdrop reads version ${JOURNAL_VERSION})`);
  if (b.length < HEADER_BYTES) throw new JournalFormatError(`journal shorter than its header (${b.length} of ${HEADER_BYTES} bytes)`);
  const length = b.readUInt16BE(6);
  if (length !== HEADER_BYTES) throw new JournalFormatError(`journal header length ${length} (version ${JOURNAL_VERSION} has ${HEADER_BYTES})`);
  if (b.readUInt32BE(36) !== crc32c(b.subarray(0, 36))) throw new JournalFormatError('journal header checksum mismatch');
  const generation = b.readUInt32BE(8);
  const fileId = b.readUInt32BE(12);
  const fromGeneration = b.readUInt32BE(16);
  const fromOffset = Number(b.readBigUInt64BE(20));
  const compactedEnd = Number(b.readBigUInt64BE(28));
  if (generation === 0 || compactedEnd < HEADER_BYTES || !u53(fromOffset) || !u53(compactedEnd)) throw new JournalFormatError(`journal header out of range (generation ${generation}, compacted end ${compactedEnd})`);
  return fromGeneration === 0 ? { generation, fileId, compactedEnd } : { generation, fileId, from: { generation: fromGeneration, offset: fromOffset }, compactedEnd };
}

/** Bytes one record takes in the journal (frame included), from its key's UTF-8 length. */
export const framedBytes = (keyBytes: number, value: Buffer | null): number => FRAME_BYTES + PAYLOAD_FIXED + keyBytes + (value?.length ?? 0);

/** Bytes one record takes in the journal (frame included). */
export const recordBytes = (key: string, value: Buffer | null): number => framedBytes(Buffer.byteLength(key), value);

/** Throws RangeError/TypeError for a record the journal cannot hold; else its key's UTF-8 bytes. */
export function checkRecord(r: JournalRecord): number {
  if (typeof r.key !== 'string') throw new TypeError('journal key must be a string');
  if (r.value !== null && !Buffer.isBuffer(r.value)) throw new TypeError(`journal value of ${JSON.stringify(r.key)} must be a Buffer or null`);
  const keyBytes = Buffer.byteLength(r.key);
  if (keyBytes > MAX_KEY_BYTES) throw new RangeError(`journal key of ${keyBytes} bytes (at most ${MAX_KEY_BYTES})`);
  const payload = PAYLOAD_FIXED + keyBytes + (r.value?.length ?? 0);
  if (payload > MAX_PAYLOAD_BYTES) throw new RangeError(`journal record of ${payload} bytes (at most ${MAX_PAYLOAD_BYTES})`);
  return keyBytes;
}

/** The records, framed, one after the other. Throws for a record checkRecord refuses. */
export function encodeRecords(records: readonly JournalRecord[]): Buffer {
  const keyBytes = new Uint32Array(records.length);
  let total = 0;
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    keyBytes[i] = checkRecord(r);
    total += framedBytes(keyBytes[i]!, r.value);
  }
  const b = Buffer.allocUnsafe(total);
  let at = 0;
  for (let i = 0; i < records.length; i++) at = writeRecord(b, at, records[i]!, keyBytes[i]!);
  return b;
}

/**
 * Frames one record into `b` at `at` (room for it checked by the caller: FRAME_BYTES + 3 + key
 * bytes + value); returns where the next goes. `keyBytes`: what checkRecord returned for it.
 */
export function writeRecord(b: Buffer, at: number, r: JournalRecord, keyBytes: number): number {
  const start = at;
  const payload = start + FRAME_BYTES;
  b[payload] = r.value === null ? DELETE : PUT;
  b.writeUInt16BE(keyBytes, payload + 1);
  at = payload + PAYLOAD_FIXED + b.write(r.key, payload + PAYLOAD_FIXED, 'utf8');
  if (r.value) at += r.value.copy(b, at);
  b.writeUInt32BE(at - payload, start);
  b.writeUInt32BE(crc32c(b, payload, at), start + 4);
  return at;
}

export interface DecodedRecords {
  records: JournalRecord[];
  /** Bytes of `b` taken by whole, valid records: where the next read starts. */
  end: number;
  /** Set when decoding stopped before the end of `b`: the first untrusted byte (relative to `b`) and why. */
  bad?: { offset: number; reason: string };
}

/**
 * Decodes the records at the start of `b` (bytes after the header), stopping at the first bad one.
 * Never throws. The values are views of `b`, not copies (a copy each made reading 100k entries
 * twice as slow): `b` must not be reused.
 */
export function decodeRecords(b: Buffer): DecodedRecords {
  const records: JournalRecord[] = [];
  let at = 0;
  const stop = (reason: string): DecodedRecords => ({ records, end: at, bad: { offset: at, reason } });
  while (at < b.length) {
    const left = b.length - at;
    if (left < FRAME_BYTES) return stop(`torn record frame (${left} of ${FRAME_BYTES} bytes)`);
    const length = b.readUInt32BE(at);
    if (length > MAX_PAYLOAD_BYTES) return stop(`record length ${length} exceeds the largest record (${MAX_PAYLOAD_BYTES})`);
    if (length < PAYLOAD_FIXED) return stop(`record length ${length} is shorter than a record`);
    if (left - FRAME_BYTES < length) return stop(`torn record (${left - FRAME_BYTES} of ${length} bytes)`);
    const payload = b.subarray(at + FRAME_BYTES, at + FRAME_BYTES + length);
    if (b.readUInt32BE(at + 4) !== crc32c(payload)) return stop('record checksum mismatch');
    const type = payload[0];
    const keyBytes = payload.readUInt16BE(1);
    if (PAYLOAD_FIXED + keyBytes > length) return stop(`record key of ${keyBytes} bytes runs past its record`);
    const key = payload.toString('utf8', PAYLOAD_FIXED, PAYLOAD_FIXED + keyBytes);
    if (type === PUT) {
      records.push({ key, value: payload.subarray(PAYLOAD_FIXED + keyBytes) });
    } else if (type === DELETE) {
      if (PAYLOAD_FIXED + keyBytes !== length) return stop('delete record carries a value');
      records.push({ key, value: null });
    } else {
      return stop(`unknown record type ${type}`);
    }
    at += FRAME_BYTES + length;
  }
  return { records, end: at };
}
