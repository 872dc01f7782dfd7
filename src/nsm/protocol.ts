// NSM (statd) wire types, program 100024 version 1, as in the Open Group's XNFS sm_inter.x,
// plus the status callback statd sends to a monitoring lock manager (Linux NLM proc 16 takes
// the same layout). Pure codecs over XdrReader/XdrWriter.
import { XdrReader, XdrWriter } from '../xdr';

export const NSM_PROGRAM = 100024;
export const NSM_VERSION = 1;
export const SM_MAXSTRLEN = 1024;
export const SM_PRIV_SIZE = 16;

export const SM_NULL = 0;
export const SM_STAT = 1;
export const SM_MON = 2;
export const SM_UNMON = 3;
export const SM_UNMON_ALL = 4;
export const SM_SIMU_CRASH = 5;
export const SM_NOTIFY = 6;

/** The only callbacks SM_MON accepts (as nfs-utils): a lock manager's reboot procedure (Linux's 16, once 24). */
export const SM_MON_PROG = 100021;
export const SM_MON_PROCS: readonly number[] = [16, 24];

/** sm_stat_res.res_stat */
export const STAT_SUCC = 0;
export const STAT_FAIL = 1;
export type SmRes = typeof STAT_SUCC | typeof STAT_FAIL;
const RES_VALUES: ReadonlySet<number> = new Set([STAT_SUCC, STAT_FAIL]);

export interface MyId {
  myName: string;
  myProg: number;
  myVers: number;
  myProc: number;
}
export interface MonId {
  monName: string;
  myId: MyId;
}
export interface Mon {
  monId: MonId;
  /** Exactly SM_PRIV_SIZE bytes, returned untouched in the status callback. */
  priv: Buffer;
}
export interface SmStatRes {
  res: SmRes;
  state: number;
}
export interface StatChge {
  monName: string;
  state: number;
}
/** The status callback's arguments (`struct status`; Linux's nlm_reboot). */
export interface SmStatus {
  monName: string;
  state: number;
  priv: Buffer;
}

// State numbers are XDR `int`; keep them in range when encoding.
const int32 = (v: number): number => v | 0;

export const decodeSmName = (r: XdrReader): string => r.string(SM_MAXSTRLEN);
export const encodeSmName = (w: XdrWriter, monName: string): void => void w.string(monName, SM_MAXSTRLEN);

export function decodeMyId(r: XdrReader): MyId {
  return { myName: r.string(SM_MAXSTRLEN), myProg: r.int(), myVers: r.int(), myProc: r.int() };
}
export function encodeMyId(w: XdrWriter, id: MyId): void {
  w.string(id.myName, SM_MAXSTRLEN).int(id.myProg).int(id.myVers).int(id.myProc);
}

export function decodeMonId(r: XdrReader): MonId {
  return { monName: r.string(SM_MAXSTRLEN), myId: decodeMyId(r) };
}
export function encodeMonId(w: XdrWriter, id: MonId): void {
  w.string(id.monName, SM_MAXSTRLEN);
  encodeMyId(w, id.myId);
}

export function decodeMon(r: XdrReader): Mon {
  const monId = decodeMonId(r);
  return { monId, priv: Buffer.from(r.fixedOpaque(SM_PRIV_SIZE)) };
}
export function encodeMon(w: XdrWriter, m: Mon): void {
  encodeMonId(w, m.monId);
  w.fixedOpaque(privOf(m.priv));
}

export function decodeSmStatRes(r: XdrReader): SmStatRes {
  return { res: r.enumOf<SmRes>(RES_VALUES, 'res'), state: r.int() };
}
export function encodeSmStatRes(w: XdrWriter, v: SmStatRes): void {
  w.enum(v.res).int(int32(v.state));
}

export const decodeSmStat = (r: XdrReader): number => r.int();
export const encodeSmStat = (w: XdrWriter, state: number): void => void w.int(int32(state));

export function decodeStatChge(r: XdrReader): StatChge {
  return { monName: r.string(SM_MAXSTRLEN), state: r.int() };
}
export function encodeStatChge(w: XdrWriter, v: StatChge): void {
  w.string(v.monName, SM_MAXSTRLEN).int(int32(v.state));
}

export function decodeSmStatus(r: XdrReader): SmStatus {
  return { monName: r.string(SM_MAXSTRLEN), state: r.int(), priv: Buffer.from(r.fixedOpaque(SM_PRIV_SIZE)) };
}
export function encodeSmStatus(w: XdrWriter, v: SmStatus): void {
  w.string(v.monName, SM_MAXSTRLEN).int(int32(v.state)).fixedOpaque(privOf(v.priv));
}

export const decodeVoid = (_r: XdrReader): undefined => undefined;
export const encodeVoid = (_w: XdrWriter, _v: unknown): void => undefined;

function privOf(priv: Buffer): Buffer {
  if (priv.length !== SM_PRIV_SIZE) throw new RangeError(`priv must be ${SM_PRIV_SIZE} bytes, got ${priv.length}`);
  return priv;
}
