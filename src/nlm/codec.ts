// NLM argument and result codecs, one set for all versions: v1/v3 carry 32-bit unsigned
// offsets and lengths, v4 unsigned 64-bit ones; everything else has the same layout
// (layouts checked against Wireshark's packet-nlm.c and Linux fs/lockd/xdr.c, xdr4.c).
// Offsets and lengths are bigints in memory whatever the version; the range helpers at the
// bottom turn wire ranges into the lock table's 64-bit ones.
import { XdrReader, XdrWriter } from '../xdr';
import { LM_MAXNAMELEN, LM_MAXSTRLEN, MAXNETOBJ_SZ, SM_MAXSTRLEN, SM_PRIV_SIZE, legalStats } from './protocol';

export interface NlmLock {
  callerName: string;
  fh: Buffer;
  oh: Buffer;
  svid: number;
  offset: bigint;
  length: bigint;
}

export interface NlmHolder {
  exclusive: boolean;
  svid: number;
  oh: Buffer;
  offset: bigint;
  length: bigint;
}

export interface NlmTestArgs { cookie: Buffer; exclusive: boolean; lock: NlmLock }
export interface NlmLockArgs { cookie: Buffer; block: boolean; exclusive: boolean; lock: NlmLock; reclaim: boolean; state: number }
export interface NlmCancelArgs { cookie: Buffer; block: boolean; exclusive: boolean; lock: NlmLock }
export interface NlmUnlockArgs { cookie: Buffer; lock: NlmLock }
/** nlm_testres: the holder is present exactly when stat is denied. */
export interface NlmTestRes { cookie: Buffer; stat: number; holder?: NlmHolder }
export interface NlmRes { cookie: Buffer; stat: number }
export interface NlmShare { callerName: string; fh: Buffer; oh: Buffer; mode: number; access: number }
export interface NlmShareArgs { cookie: Buffer; share: NlmShare; reclaim: boolean }
export interface NlmShareRes { cookie: Buffer; stat: number; sequence: number }
export interface NlmNotify { name: string; state: number }
export interface NlmReboot { monName: string; state: number; priv: Buffer }

const STAT_DENIED = 1;
const SHARE_VALUES: ReadonlySet<number> = new Set([0, 1, 2, 3]);

const wide = (vers: number): boolean => vers === 4;

function readRangePart(r: XdrReader, vers: number): bigint {
  return wide(vers) ? r.uhyper() : BigInt(r.uint());
}

function writeRangePart(w: XdrWriter, vers: number, v: bigint): void {
  if (wide(vers)) w.uhyper(v);
  else w.uint(Number(v));
}

const netobj = (r: XdrReader): Buffer => r.opaque(MAXNETOBJ_SZ);

// ---- nlm_lock / nlm4_lock ----

export function decodeLock(r: XdrReader, vers: number): NlmLock {
  const callerName = r.string(LM_MAXSTRLEN);
  const fh = netobj(r);
  const oh = netobj(r);
  const svid = r.int();
  const offset = readRangePart(r, vers);
  const length = readRangePart(r, vers);
  return { callerName, fh, oh, svid, offset, length };
}

export function encodeLock(w: XdrWriter, vers: number, l: NlmLock): void {
  w.string(l.callerName, LM_MAXSTRLEN).opaque(l.fh, MAXNETOBJ_SZ).opaque(l.oh, MAXNETOBJ_SZ).int(l.svid);
  writeRangePart(w, vers, l.offset);
  writeRangePart(w, vers, l.length);
}

function decodeHolder(r: XdrReader, vers: number): NlmHolder {
  const exclusive = r.bool();
  const svid = r.int();
  const oh = netobj(r);
  const offset = readRangePart(r, vers);
  const length = readRangePart(r, vers);
  return { exclusive, svid, oh, offset, length };
}

function encodeHolder(w: XdrWriter, vers: number, h: NlmHolder): void {
  w.bool(h.exclusive).int(h.svid).opaque(h.oh, MAXNETOBJ_SZ);
  writeRangePart(w, vers, h.offset);
  writeRangePart(w, vers, h.length);
}

function decodeStat(r: XdrReader, vers: number): number {
  return r.enumOf(legalStats(vers), 'nlm_stats');
}

// ---- arguments ----

export function decodeTestArgs(r: XdrReader, vers: number): NlmTestArgs {
  const cookie = netobj(r);
  const exclusive = r.bool();
  return { cookie, exclusive, lock: decodeLock(r, vers) };
}

export function encodeTestArgs(w: XdrWriter, vers: number, a: NlmTestArgs): void {
  w.opaque(a.cookie, MAXNETOBJ_SZ).bool(a.exclusive);
  encodeLock(w, vers, a.lock);
}

export function decodeLockArgs(r: XdrReader, vers: number): NlmLockArgs {
  const cookie = netobj(r);
  const block = r.bool();
  const exclusive = r.bool();
  const lock = decodeLock(r, vers);
  const reclaim = r.bool();
  const state = r.int();
  return { cookie, block, exclusive, lock, reclaim, state };
}

export function encodeLockArgs(w: XdrWriter, vers: number, a: NlmLockArgs): void {
  w.opaque(a.cookie, MAXNETOBJ_SZ).bool(a.block).bool(a.exclusive);
  encodeLock(w, vers, a.lock);
  w.bool(a.reclaim).int(a.state);
}

export function decodeCancelArgs(r: XdrReader, vers: number): NlmCancelArgs {
  const cookie = netobj(r);
  const block = r.bool();
  const exclusive = r.bool();
  return { cookie, block, exclusive, lock: decodeLock(r, vers) };
}

export function encodeCancelArgs(w: XdrWriter, vers: number, a: NlmCancelArgs): void {
  w.opaque(a.cookie, MAXNETOBJ_SZ).bool(a.block).bool(a.exclusive);
  encodeLock(w, vers, a.lock);
}

export function decodeUnlockArgs(r: XdrReader, vers: number): NlmUnlockArgs {
  const cookie = netobj(r);
  return { cookie, lock: decodeLock(r, vers) };
}

export function encodeUnlockArgs(w: XdrWriter, vers: number, a: NlmUnlockArgs): void {
  w.opaque(a.cookie, MAXNETOBJ_SZ);
  encodeLock(w, vers, a.lock);
}

export function decodeShareArgs(r: XdrReader): NlmShareArgs {
  const cookie = netobj(r);
  const callerName = r.string(LM_MAXSTRLEN);
  const fh = netobj(r);
  const oh = netobj(r);
  const mode = r.enumOf<number>(SHARE_VALUES, 'fsh_mode');
  const access = r.enumOf<number>(SHARE_VALUES, 'fsh_access');
  const reclaim = r.bool();
  return { cookie, share: { callerName, fh, oh, mode, access }, reclaim };
}

export function encodeShareArgs(w: XdrWriter, a: NlmShareArgs): void {
  const s = a.share;
  w.opaque(a.cookie, MAXNETOBJ_SZ).string(s.callerName, LM_MAXSTRLEN).opaque(s.fh, MAXNETOBJ_SZ).opaque(s.oh, MAXNETOBJ_SZ);
  w.enum(s.mode).enum(s.access).bool(a.reclaim);
}

export function decodeNotify(r: XdrReader): NlmNotify {
  const name = r.string(LM_MAXNAMELEN);
  return { name, state: r.int() };
}

export function encodeNotify(w: XdrWriter, a: NlmNotify): void {
  w.string(a.name, LM_MAXNAMELEN).int(a.state);
}

export function decodeReboot(r: XdrReader): NlmReboot {
  const monName = r.string(SM_MAXSTRLEN);
  const state = r.int();
  return { monName, state, priv: r.fixedOpaque(SM_PRIV_SIZE) };
}

export function encodeReboot(w: XdrWriter, a: NlmReboot): void {
  if (a.priv.length !== SM_PRIV_SIZE) throw new RangeError(`priv must be ${SM_PRIV_SIZE} bytes`);
  w.string(a.monName, SM_MAXSTRLEN).int(a.state).fixedOpaque(a.priv);
}

// ---- results (also the arguments of the *_RES procedures) ----

export function decodeTestRes(r: XdrReader, vers: number): NlmTestRes {
  const cookie = netobj(r);
  const stat = decodeStat(r, vers);
  return stat === STAT_DENIED ? { cookie, stat, holder: decodeHolder(r, vers) } : { cookie, stat };
}

export function encodeTestRes(w: XdrWriter, vers: number, res: NlmTestRes): void {
  w.opaque(res.cookie, MAXNETOBJ_SZ).enum(res.stat);
  if (res.stat === STAT_DENIED) {
    if (!res.holder) throw new RangeError('denied test result needs a holder');
    encodeHolder(w, vers, res.holder);
  }
}

export function decodeRes(r: XdrReader, vers: number): NlmRes {
  const cookie = netobj(r);
  return { cookie, stat: decodeStat(r, vers) };
}

export function encodeRes(w: XdrWriter, res: NlmRes): void {
  w.opaque(res.cookie, MAXNETOBJ_SZ).enum(res.stat);
}

export function decodeShareRes(r: XdrReader, vers: number): NlmShareRes {
  const cookie = netobj(r);
  const stat = decodeStat(r, vers);
  return { cookie, stat, sequence: r.int() };
}

export function encodeShareRes(w: XdrWriter, res: NlmShareRes): void {
  w.opaque(res.cookie, MAXNETOBJ_SZ).enum(res.stat).int(res.sequence);
}

// ---- ranges ----

const U32_SPAN = 1n << 32n;
const U32_MAX = U32_SPAN - 1n;

/**
 * A wire range as the table's 64-bit range. v4's pass through (the table answers fbig for those
 * past OFFSET_MAX, as Linux 6.0+ does). In v1/v3 a range whose end passes the 32-bit space means
 * "to end of file", as Linux's svcxdr_decode_lock has it (Linux tests the end as a signed 32-bit
 * value, we as an unsigned one since the protocol's offsets are unsigned).
 */
export function tableRange(vers: number, offset: bigint, length: bigint): { offset: bigint; length: bigint } {
  if (!wide(vers) && length !== 0n && offset + length > U32_SPAN) return { offset, length: 0n };
  return { offset, length };
}

/** A table range as a holder range a v1/v3 client can read: clamped, and "to EOF" where it overflows. */
export function wireRange(vers: number, offset: bigint, length: bigint): { offset: bigint; length: bigint } {
  if (wide(vers)) return { offset, length };
  const o = offset > U32_MAX ? U32_MAX : offset;
  return { offset: o, length: length !== 0n && o + length > U32_SPAN ? 0n : length };
}
