// NLM program constants (X/Open XNFS "Protocols for Interworking", RFC 1813 appendix II) and the
// status mapping between the lock table's names and each version's wire codes.
import type { LockStatus } from '../locks/types';

export const NLM_PROG = 100021;
export const NLM_VERSIONS = [1, 3, 4] as const;
export type NlmVersion = (typeof NLM_VERSIONS)[number];

/** netobj<MAXNETOBJ_SZ> (cookies, file handles, owner handles). */
export const MAXNETOBJ_SZ = 1024;
/** caller_name<LM_MAXSTRLEN>. */
export const LM_MAXSTRLEN = 1024;
/** nlm_notify name<LM_MAXNAMELEN> (FREE_ALL). */
export const LM_MAXNAMELEN = 1025;
/** nlm_reboot mon_name<SM_MAXSTRLEN> (Linux's private SM_NOTIFY callback from statd). */
export const SM_MAXSTRLEN = 1024;
export const SM_PRIV_SIZE = 16;

export const NlmProc = {
  NULL: 0,
  TEST: 1,
  LOCK: 2,
  CANCEL: 3,
  UNLOCK: 4,
  GRANTED: 5,
  TEST_MSG: 6,
  LOCK_MSG: 7,
  CANCEL_MSG: 8,
  UNLOCK_MSG: 9,
  GRANTED_MSG: 10,
  TEST_RES: 11,
  LOCK_RES: 12,
  CANCEL_RES: 13,
  UNLOCK_RES: 14,
  GRANTED_RES: 15,
  /** Linux only: rpc.statd's callback telling lockd a monitored host rebooted (nlm_reboot). */
  SM_NOTIFY: 16,
  SHARE: 20,
  UNSHARE: 21,
  NM_LOCK: 22,
  FREE_ALL: 23,
} as const;

/** Wire codes: nlm_stats (v1/v3) are 0..4, nlm4_stats (v4) extend them with 5..9. */
export const NlmStat: Readonly<Record<LockStatus, number>> = {
  granted: 0,
  denied: 1,
  denied_nolocks: 2,
  blocked: 3,
  denied_grace_period: 4,
  deadlck: 5,
  rofs: 6,
  stale_fh: 7,
  fbig: 8,
  failed: 9,
};

const statNames: readonly LockStatus[] = Object.entries(NlmStat)
  .sort((a, b) => a[1] - b[1])
  .map(([name]) => name as LockStatus);

export const statName = (code: number): LockStatus | undefined => statNames[code];

export const legalStats = (vers: number): ReadonlySet<number> =>
  vers === 4 ? LEGAL_V4 : LEGAL_V1;
const LEGAL_V1: ReadonlySet<number> = new Set([0, 1, 2, 3, 4]);
const LEGAL_V4: ReadonlySet<number> = new Set([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);

/**
 * The wire code for a table status in a given version. Versions 1 and 3 cannot say deadlck,
 * rofs, stale_fh, fbig or failed: like Linux's cast_to_nlm (fs/lockd/svcproc.c), deadlck
 * becomes denied and the rest denied_nolocks.
 */
export function statusCode(status: LockStatus, vers: number): number {
  if (vers === 4) return NlmStat[status];
  if (status === 'deadlck') return NlmStat.denied;
  const code = NlmStat[status];
  return code <= 4 ? code : NlmStat.denied_nolocks;
}
