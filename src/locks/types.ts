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
  /** Set on a lock of an arrived address's journal that its owner has not reclaimed yet. */
  awaitingReclaim?: true;
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

/**
 * What LOCK may answer: a status, or 'drop_reply', which is no answer at all, so that the client
 * sends the request again (Linux's nlm_drop_reply: the file's open must first break a lease or an
 * NFSv4 delegation, nfserr_jukebox in fs/nfsd/lockd.c). Never on the wire.
 */
export type LockAnswer = LockStatus | 'drop_reply';

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
  /**
   * What the owner held in the granted range just before (an upgrade's shared lock, say), so that
   * an unconfirmed grant can be undone to exactly that (LockTable.undoGrant).
   */
  prior: PriorLock[];
}

/** One of the owner's locks inside a granted range before the grant, clipped to it. */
export interface PriorLock {
  offset: bigint;
  length: bigint;
  exclusive: boolean;
  serverAddress: string;
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
  /** Refused or queued: the range is another owner's journal entry, awaiting that owner's reclaim. */
  | { type: 'kept'; request: LockRequest; holder: { host: string; address: string } }
  | { type: 'dropped'; reason: 'address' | 'host' | 'export'; key: string; counts: DropCounts }
  | { type: 'grace'; period: GracePeriod; state: 'started' | 'ended' };

/** A byte position as the table keeps it (see range.ts): a number, a bigint beyond 2^53, Infinity for end of file. */
export type FilePos = number | bigint;

/** A conflicting lock held outside the table (another process, node or NFS server), as TEST reports it. */
export interface OutsideHolder {
  exclusive: boolean;
  start: FilePos;
  end: FilePos;
}

/**
 * Where the table's decisions reach the real files (src/files implements it). The table stays the
 * NLM truth and calls this port synchronously at each decision: a grant is committed only after
 * `lock` answered 'granted', and every release reaches it before the table call returns. Files
 * are named by the table's key (the handle as latin1) and owners by theirs; one open file
 * description per (owner, file) mirrors the owner's ranges exactly, so the kernel splits,
 * merges, upgrades and downgrades as the table does. Without a FileLocker locks live in memory.
 */
export interface FileLocker {
  /**
   * undefined when the handle names a file this node can lock (or keeps in memory); else the
   * status to answer. Opens nothing for I/O. The table calls it before every answer that does
   * not come from `lock` or `test` (which check the handle themselves when they open the file),
   * and before it queues a request, with `exclusive` (an exclusive lock needs the file writable:
   * rofs on a read-only filesystem, which no wait would change).
   */
  validate(fileKey: string, fh: Buffer, exclusive?: boolean): LockStatus | undefined;
  /**
   * The identity of the file a handle names (its filesystem and kernel handle), or undefined when
   * the handle names none this part locks. Two handles of one file (two exports of one
   * filesystem, a knfsd and an NFS-Ganesha handle, two fsid types) have one identity: the table
   * keeps them one file, as Linux's lockd keys its files by inode. Opens nothing. Without it the
   * table knows a file by its handle's bytes only.
   */
  identify?(fh: Buffer): string | undefined;
  /**
   * Sets [start, end] of this type on the owner's description of the file: 'granted', 'denied'
   * (a holder outside the table conflicts), 'drop_reply' (its open started breaking someone's
   * lease: ask again once it is broken), or the refusal (stale_fh, rofs, denied_nolocks, failed).
   */
  lock(fileKey: string, fh: Buffer, ownerKey: string, start: FilePos, end: FilePos, exclusive: boolean): LockAnswer;
  /** Releases [start, end] of the owner's locks on the file. */
  unlock(fileKey: string, ownerKey: string, start: FilePos, end: FilePos): void;
  /** The owner holds and awaits nothing more on the file: its description closes (releasing everything at once). */
  close(fileKey: string, ownerKey: string): void;
  /**
   * close() of each (fileKeys[i], ownerKeys[i]) at once (a drop): when it returns every kernel
   * lock of theirs is released; the descriptions themselves may still be closing just after.
   */
  closeAll(fileKeys: readonly string[], ownerKeys: readonly string[]): void;
  /** A holder outside the table that conflicts with [start, end] (the owner's own locks excluded), or the refusal. */
  test(fileKey: string, fh: Buffer, ownerKey: string, start: FilePos, end: FilePos, exclusive: boolean): OutsideHolder | LockStatus | undefined;
  /**
   * Waits in the kernel until the owner's description holds [start, end]; `done(true)` once it
   * does (also when the wait was cancelled just too late: the caller undoes it), `done(false)`
   * otherwise. Always asynchronous. Returns the cancel.
   */
  wait(fileKey: string, fh: Buffer, ownerKey: string, start: FilePos, end: FilePos, exclusive: boolean, done: (acquired: boolean) => void): () => void;
}
