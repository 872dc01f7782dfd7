// The journal's bytes. Pure functions over Buffers; the file adapter does the I/O.
//
//   header (16 bytes, once, at offset 0)
//     0  magic "LDJL"
//     4  version u16 BE (1)
//     6  header length u16 BE (16)
//     8  generation u32 BE       a new one at each compaction: followers re-read the whole file
//    12  crc32 u32 BE of bytes 0..11
//   record (repeated to the end)
//     0  payload length u32 BE
//     4  crc32 u32 BE of the payload
//     8  payload: type u8 (1 put, 2 delete), key length u16 BE, key (UTF-8), value (put: the rest)
//
// A record is trusted only whole and with its checksum: decoding stops at the first one that is
// not (a write torn by a crash, or in progress as a follower reads) and says where and why.
import { crc32 } from 'node:zlib';
import type { JournalRecord } from './types';

export const JOURNAL_MAGIC = 'LDJL';
export const JOURNAL_VERSION = 1;
export const HEADER_BYTES = 16;
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

export function encodeHeader(generation: number): Buffer {
  if (!Number.isInteger(generation) || generation < 0 || generation > 0xffffffff) throw new RangeError(`journal generation ${generation} is not a u32`);
  const b = Buffer.alloc(HEADER_BYTES);
  b.write(JOURNAL_MAGIC, 0, 'latin1');
  b.writeUInt16BE(JOURNAL_VERSION, 4);
  b.writeUInt16BE(HEADER_BYTES, 6);
  b.writeUInt32BE(generation, 8);
  b.writeUInt32BE(crc32(b.subarray(0, 12)), 12);
  return b;
}

/** The header's generation. Throws JournalFormatError saying what is wrong. */
export function decodeHeader(b: Buffer): { generation: number } {
  if (b.length === 0) throw new JournalFormatError('empty journal (no header)');
  if (b.length < 6) throw new JournalFormatError(`journal shorter than its header (${b.length} of ${HEADER_BYTES} bytes)`);
  const magic = b.toString('latin1', 0, 4);
  if (magic !== JOURNAL_MAGIC) throw new JournalFormatError(`not a lockdrop journal (starts with ${b.subarray(0, 4).toString('hex')}, not "${JOURNAL_MAGIC}")`);
  const version = b.readUInt16BE(4);
  if (version !== JOURNAL_VERSION) throw new JournalFormatError(`unknown journal version ${version} (this lockdrop reads version ${JOURNAL_VERSION})`);
  if (b.length < HEADER_BYTES) throw new JournalFormatError(`journal shorter than its header (${b.length} of ${HEADER_BYTES} bytes)`);
  const length = b.readUInt16BE(6);
  if (length !== HEADER_BYTES) throw new JournalFormatError(`journal header length ${length} (version ${JOURNAL_VERSION} has ${HEADER_BYTES})`);
  if (b.readUInt32BE(12) !== crc32(b.subarray(0, 12))) throw new JournalFormatError('journal header checksum mismatch');
  return { generation: b.readUInt32BE(8) };
}

/** Bytes one record takes in the journal (frame included). */
export const recordBytes = (key: string, value: Buffer | null): number =>
  FRAME_BYTES + PAYLOAD_FIXED + Buffer.byteLength(key) + (value?.length ?? 0);

/** Throws RangeError/TypeError for a record the journal cannot hold. */
export function checkRecord(r: JournalRecord): void {
  if (typeof r.key !== 'string') throw new TypeError('journal key must be a string');
  if (r.value !== null && !Buffer.isBuffer(r.value)) throw new TypeError(`journal value of ${JSON.stringify(r.key)} must be a Buffer or null`);
  const keyBytes = Buffer.byteLength(r.key);
  if (keyBytes > MAX_KEY_BYTES) throw new RangeError(`journal key of ${keyBytes} bytes (at most ${MAX_KEY_BYTES})`);
  const payload = recordBytes(r.key, r.value) - FRAME_BYTES;
  if (payload > MAX_PAYLOAD_BYTES) throw new RangeError(`journal record of ${payload} bytes (at most ${MAX_PAYLOAD_BYTES})`);
}

/** The records, framed, one after the other. Throws for a record checkRecord refuses. */
export function encodeRecords(records: readonly JournalRecord[]): Buffer {
  const keyBytes = new Uint32Array(records.length);
  let total = 0;
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    checkRecord(r);
    keyBytes[i] = Buffer.byteLength(r.key);
    total += FRAME_BYTES + PAYLOAD_FIXED + keyBytes[i]! + (r.value?.length ?? 0);
  }
  const b = Buffer.allocUnsafe(total);
  let at = 0;
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    const start = at;
    const payload = start + FRAME_BYTES;
    b[payload] = r.value === null ? DELETE : PUT;
    b.writeUInt16BE(keyBytes[i]!, payload + 1);
    at = payload + PAYLOAD_FIXED + b.write(r.key, payload + PAYLOAD_FIXED, 'utf8');
    if (r.value) at += r.value.copy(b, at);
    b.writeUInt32BE(at - payload, start);
    b.writeUInt32BE(crc32(b.subarray(payload, at)), start + 4);
  }
  return b;
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
    if (b.readUInt32BE(at + 4) !== crc32(payload)) return stop('record checksum mismatch');
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
