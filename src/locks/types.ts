// The lock table's contract with the NLM service, the failover controller and the admin views.
// Offsets and lengths are unsigned 64-bit values as on the NLM4 wire; length 0n means "to end of file".
// The table knows nothing about sockets: the server address is just the string every request carries.

/** A client host: bound to both its caller_name and its source address (see hostKey). */
export interface ClientHost {
  /** Canonical key, `${callerName}@${address}`; two machines claiming one name are two hosts. */
  key: string;
  callerName: string;
  address: string;
}

export const hostKey = (callerName: string, address: string): string => `${callerName}@${address}`;

/** A POSIX lock owner: (client host, svid, oh). */
export interface LockOwner {
  host: string; // ClientHost.key
  svid: number;
  oh: Buffer;
}

export interface LockRequest {
  fh: Buffer;
  owner: LockOwner;
  exclusive: boolean;
  offset: bigint;
  length: bigint;
  /** The local address the request arrived on (the VIP). */
  serverAddress: string;
}

export interface HeldLock {
  fh: Buffer;
  owner: LockOwner;
  exclusive: boolean;
  offset: bigint;
  length: bigint; // 0n = to end of file
  serverAddress: string;
  exportId: string | undefined;
  /** ms since epoch when this owner first held this range. */
  since: number;
}

/** NLM status names (nlm4_stats); the wire codes live in nlm. */
export type LockStatus =
  | 'granted'
  | 'denied'
  | 'denied_nolocks'
  | 'blocked'
  | 'denied_grace_period'
  | 'deadlck'
  | 'rofs'
  | 'stale_fh'
  | 'fbig'
  | 'failed';

export type TestResult = { status: 'granted' } | { status: 'denied'; holder: HeldLock } | { status: Exclude<LockStatus, 'granted' | 'denied' | 'blocked'> };

export interface LockOptions {
  block: boolean;
  reclaim: boolean;
  /**
   * Makes what onBlockGranted hands back when a queued request is granted later (the NLM layer
   * keeps the cookie and callback address there). Called only if the request is queued, so a
   * blocking LOCK granted at once builds nothing.
   */
  waiter?: () => unknown;
}

export interface BlockGranted {
  lock: HeldLock;
  waiter: unknown;
}

export type ShareMode = 0 | 1 | 2 | 3; // fsm_DN, fsm_DR, fsm_DW, fsm_DRW
export type ShareAccess = 0 | 1 | 2 | 3; // fsa_NONE, fsa_R, fsa_W, fsa_RW

export interface ShareRequest {
  fh: Buffer;
  owner: { host: string; oh: Buffer };
  mode: ShareMode;
  access: ShareAccess;
  serverAddress: string;
}

export interface DropCounts {
  locks: number;
  shares: number;
  blocked: number;
  /** Distinct client hosts that lost something. */
  clients: number;
  /** Waiters (possibly through other addresses) granted because of the release. */
  woken: number;
}

export type GraceScope =
  | { kind: 'global' }
  | { kind: 'address'; address: string }
  | { kind: 'export'; exportId: string };

export interface GracePeriod {
  scope: GraceScope;
  startedAt: number;
  endsAt: number;
}

export type LockChange =
  | { type: 'granted'; lock: HeldLock; viaBlock: boolean }
  | { type: 'released'; lock: HeldLock }
  | { type: 'blocked'; request: LockRequest }
  | { type: 'dropped'; reason: 'address' | 'host' | 'export'; key: string; counts: DropCounts }
  | { type: 'grace'; period: GracePeriod; state: 'started' | 'ended' };
