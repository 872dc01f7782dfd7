// The unit of the lock journal: one owner's locks on one file through one server address, as the
// cluster keeps them until the owner reclaims or gives them up. The journal of an address is a
// key/value log (src/store); the key names (owner, file), the value is this entry's bytes and a
// deleted key is an owner that holds nothing more there. A pure codec: every node decodes what any
// node wrote, so a value that does not parse is reported, never guessed at.
import { EOF, toWire, type Pos } from './range';
import type { LockOwner } from './types';

export interface JournalLock {
  offset: bigint;
  length: bigint; // 0n = to end of file
  exclusive: boolean;
}

export interface JournalEntry {
  owner: LockOwner;
  fh: Buffer;
  exportId: string | undefined;
  locks: JournalLock[];
}

export class JournalEntryError extends Error {
  constructor(message: string) {
    super(`journal entry: ${message}`);
    this.name = 'JournalEntryError';
  }
}

const VERSION = 1;
const NO_EXPORT = 0xffff;
/** NLM4 handles are at most 64 bytes, owner handles at most 1024 (nlm4 netobj limits). */
const MAX_FH = 64;
const MAX_OH = 1024;
const MAX_TEXT = 1024;

/** The locker's and the journal's name for an owner; length-prefixed host, so no (host, svid, oh) triple can spell another's. */
export const ownerKeyOfParts = (host: string, svid: number, oh: string): string => `${host.length}:${host}${svid}:${oh}`;
export const ownerKey = (o: LockOwner): string => ownerKeyOfParts(o.host, o.svid, o.oh.toString('latin1'));

/** The journal key of an owner's entry on a file (the handle as latin1, as the table keys files). */
export const journalKey = (owner: string, file: string): string => `${owner.length}:${owner}${file}`;

/**
 * What encodeJournalEntry takes: a JournalEntry, or the forms the table has at hand (the handle as
 * its latin1 key, offsets and lengths as numbers while exact), so that writing an entry at every
 * grant builds nothing first.
 */
export interface JournalEntryParts {
  /** A LockOwner, or its owner handle as latin1 (as the table keeps it). */
  owner: { host: string; svid: number; oh: Buffer | string };
  fh: Buffer | string;
  exportId: string | undefined;
  /** As on the wire, or as the table's positions (range.ts). */
  locks: readonly ({ offset: bigint | number; length: bigint | number; exclusive: boolean } | { start: Pos; end: Pos; exclusive: boolean })[];
}

const TWO_32 = 2 ** 32;

/** A u64 from a bigint, or from a number while it is exact. */
function writeU64(b: Buffer, v: bigint | number, o: number): number {
  if (typeof v === 'bigint') return b.writeBigUInt64BE(v, o);
  if (!Number.isInteger(v) || v < 0 || v > 2 ** 53) throw new JournalEntryError(`lock offset or length ${v} is not an exact u64`);
  b.writeUInt32BE(Math.floor(v / TWO_32), o);
  return b.writeUInt32BE(v >>> 0, o + 4);
}

export function encodeJournalEntry(e: JournalEntryParts): Buffer {
  const hostBytes = Buffer.byteLength(e.owner.host, 'utf8');
  const expBytes = e.exportId === undefined ? 0 : Buffer.byteLength(e.exportId, 'utf8');
  const fhBytes = typeof e.fh === 'string' ? e.fh.length : e.fh.length;
  if (hostBytes > MAX_TEXT || expBytes > MAX_TEXT) throw new JournalEntryError('host or export name longer than 1024 bytes');
  if (fhBytes > MAX_FH || e.owner.oh.length > MAX_OH) throw new JournalEntryError('handle too long');
  if (e.locks.length > 0xffff) throw new JournalEntryError('more than 65535 locks in one entry');
  const size = 1 + 2 + hostBytes + 4 + 2 + e.owner.oh.length + 2 + fhBytes + 2 + expBytes + 2 + e.locks.length * 17;
  const b = Buffer.allocUnsafe(size);
  let o = b.writeUInt8(VERSION, 0);
  o = b.writeUInt16BE(hostBytes, o);
  o += b.write(e.owner.host, o, 'utf8');
  o = b.writeInt32BE(e.owner.svid | 0, o);
  o = b.writeUInt16BE(e.owner.oh.length, o);
  o += typeof e.owner.oh === 'string' ? b.write(e.owner.oh, o, 'latin1') : e.owner.oh.copy(b, o);
  o = b.writeUInt16BE(fhBytes, o);
  o += typeof e.fh === 'string' ? b.write(e.fh, o, 'latin1') : e.fh.copy(b, o);
  o = b.writeUInt16BE(e.exportId === undefined ? NO_EXPORT : expBytes, o);
  if (e.exportId !== undefined) o += b.write(e.exportId, o, 'utf8');
  o = b.writeUInt16BE(e.locks.length, o);
  for (const l of e.locks) {
    let offset: bigint | number;
    let length: bigint | number;
    if (!('start' in l)) ({ offset, length } = l);
    else if (typeof l.start === 'number' && typeof l.end === 'number') {
      // Exact numbers: no BigInt per grant. toWire for positions past 2^53.
      offset = l.start;
      length = l.end === EOF ? 0 : l.end - l.start + 1;
    } else ({ offset, length } = toWire(l.start, l.end));
    o = writeU64(b, offset, o);
    o = writeU64(b, length, o);
    o = b.writeUInt8(l.exclusive ? 1 : 0, o);
  }
  return b;
}

export function decodeJournalEntry(b: Buffer): JournalEntry {
  let o = 0;
  const need = (n: number, what: string): void => {
    if (o + n > b.length) throw new JournalEntryError(`truncated at byte ${o}: ${what} needs ${n} bytes, ${b.length - o} left`);
  };
  const bytes = (max: number, what: string): Buffer => {
    need(2, `${what} length`);
    const n = b.readUInt16BE(o);
    o += 2;
    if (n > max) throw new JournalEntryError(`${what} of ${n} bytes (at most ${max})`);
    need(n, what);
    const out = Buffer.from(b.subarray(o, o + n));
    o += n;
    return out;
  };
  need(1, 'version');
  const version = b.readUInt8(o++);
  if (version !== VERSION) throw new JournalEntryError(`unknown version ${version}`);
  const host = bytes(MAX_TEXT, 'host').toString('utf8');
  need(4, 'svid');
  // Signed, as NLM's svid is (an int32) and as the table keeps it: the owner decoded is the owner that locked.
  const svid = b.readInt32BE(o);
  o += 4;
  const oh = bytes(MAX_OH, 'owner handle');
  const fh = bytes(MAX_FH, 'file handle');
  need(2, 'export length');
  let exportId: string | undefined;
  if (b.readUInt16BE(o) === NO_EXPORT) o += 2;
  else exportId = bytes(MAX_TEXT, 'export').toString('utf8');
  need(2, 'lock count');
  const n = b.readUInt16BE(o);
  o += 2;
  need(n * 17, `${n} locks`);
  const locks: JournalLock[] = [];
  for (let i = 0; i < n; i++) {
    const offset = b.readBigUInt64BE(o);
    const length = b.readBigUInt64BE(o + 8);
    const x = b.readUInt8(o + 16);
    if (x > 1) throw new JournalEntryError(`lock ${i}: exclusive flag ${x}`);
    locks.push({ offset, length, exclusive: x === 1 });
    o += 17;
  }
  if (o !== b.length) throw new JournalEntryError(`${b.length - o} bytes after the last lock`);
  return { owner: { host, svid, oh }, fh, exportId, locks };
}

/** An arriving address's journal entries set up in the table as locks awaiting their owners' reclaim. */
export interface Arrival {
  /** Locks awaiting reclaim, and the client hosts they belong to. */
  locks: number;
  hosts: number;
  /** Entries the files refused (another locker took the range before the placeholder): locks lost. */
  lost: { entry: JournalEntry; status: string }[];
}

/** An address whose every awaiting lock has been reclaimed or given up. */
export interface ReclaimDone {
  address: string;
  locks: number;
  hosts: number;
  /** From the arrival to the last reclaim. */
  ms: number;
}

/** What an address's grace left unreclaimed, per client host; removed from the table and the journal. */
export interface Unreclaimed {
  address: string;
  total: number;
  locks: number;
  byHost: Map<string, number>;
}
