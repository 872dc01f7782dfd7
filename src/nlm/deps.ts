// What the NLM service is given: the lock table as it uses it, the export policy, its options and
// its other dependencies. Below both the handlers and the service, which composes them: nothing
// here imports either.
import os from 'node:os';
import type { Logger } from 'pino';
import type { CallContext, Endpoint } from '../rpc/types';
import type { BlockGranted, DropCounts, LockAnswer, LockOptions, LockRequest, LockStatus, ShareRequest, TestResult } from '../locks/types';
import type { NlmReboot } from './codec';
import type { NlmRpcCaller } from './callbacks';
import type { HostMonitor } from './hosts';
import type { NlmVersion } from './protocol';

/** What the service needs of the lock table (src/locks LockTable satisfies it). */
export interface NlmLockTable {
  test(req: LockRequest): TestResult;
  lock(req: LockRequest, opts: LockOptions): LockAnswer;
  cancel(req: LockRequest): LockStatus;
  unlock(req: LockRequest): LockStatus;
  share(req: ShareRequest, reclaim: boolean): LockStatus;
  unshare(req: ShareRequest): LockStatus;
  freeAll(host: string): DropCounts;
  hostsAt(serverAddress: string): ReadonlySet<string>;
  undoGrant(g: BlockGranted): void;
}

/**
 * Export policy: may this peer use this file handle, and must it come from a privileged port?
 * `callerName` is the NLM caller_name the request carried (for the refusal's log line); `write`:
 * the request is for an exclusive lock, which needs write access to the file (Linux's lockd opens
 * it for writing, a shared lock or SHARE for reading). A refusal is `failed` unless it says
 * `stale_fh` (a handle of no export, as knfsd's fh_verify has it: denied_nolocks to v1/v3).
 */
export type ExportPolicy = (fh: Buffer, peer: Endpoint, ctx: CallContext, callerName: string, write: boolean) => { allowed: boolean; secure: boolean; refusal?: 'stale_fh' };

/** Why a request its export allowed was refused by this server (not a conflict: see NlmServiceDeps.onRefused). */
export type NlmRefusalReason =
  | 'stale-handle' // the handle names no file (stale_fh; denied_nolocks to v1/v3)
  | 'no-locks' // denied_nolocks from the table or the files: an address being dropped, the fd budget, ENOLCK
  | 'read-only' // rofs
  | 'failed' // failed
  | 'unmonitored'; // the host could not be monitored (SM_MON failed): denied_nolocks

export interface NlmRefusal {
  callerName: string;
  /** The status answered, before a v1/v3 answer folds it into denied_nolocks. */
  status: LockStatus;
  reason: NlmRefusalReason;
}

export interface NlmServiceOptions {
  versions: readonly NlmVersion[];
  /** Refuse AUTH_NULL (and other flavours) on state-changing procedures. */
  requireAuthSys: boolean;
  /** caller_name in GRANTED callbacks. */
  serverName: string;
  hostIdleMs: number;
  hostGcIntervalMs: number;
  grantTimeoutMs: number;
  grantRetryInitialMs: number;
  grantRetryMaxMs: number;
  callbackTimeoutMs: number;
  portCacheMs: number;
  /**
   * Transport of *_RES and GRANTED callbacks: 'same' as the request, as Linux does
   * (nlmsvc_lookup_host keys the host by rq_prot), or always one.
   */
  callbackTransport: 'same' | 'udp' | 'tcp';
}

export const defaultNlmServiceOptions: NlmServiceOptions = {
  versions: [1, 3, 4],
  requireAuthSys: true,
  serverName: os.hostname(),
  hostIdleMs: 300_000, // Linux NLM_HOST_EXPIRE
  hostGcIntervalMs: 120_000, // Linux NLM_HOST_COLLECT
  grantTimeoutMs: 60_000,
  grantRetryInitialMs: 1_000,
  grantRetryMaxMs: 10_000, // Linux retries a grant every 10 s
  callbackTimeoutMs: 5_000,
  portCacheMs: 30_000,
  callbackTransport: 'same',
};

export interface NlmRebootNotice extends NlmReboot {
  from: Endpoint;
}

export interface NlmServiceDeps {
  table: NlmLockTable;
  /** Callbacks (*_RES, GRANTED) go out through it. Default: src/rpc's RpcClientPool with callbackCredential. */
  rpc?: NlmRpcCaller;
  monitor?: HostMonitor;
  exportPolicy?: ExportPolicy;
  logger?: Logger;
  /**
   * The lock journal's commit: resolves once what the table journaled so far is durable (undefined:
   * nothing pending). A grant is answered, and GRANTED sent, only after it — an owner must never
   * hold a lock the cluster could forget in a move.
   */
  durable?(): Promise<void> | undefined;
  /**
   * A request refused by this server once its export let it in (stale_fh, denied_nolocks, rofs,
   * failed): told here so that the operator can find the client; the export policy tells its own.
   */
  onRefused?(refusal: NlmRefusal, ctx: CallContext): void;
  /** Linux's statd → lockd SM_NOTIFY (proc 16), already checked to come from a local privileged port. */
  onReboot?(notice: NlmRebootNotice): void;
  now?: () => number;
  options?: Partial<NlmServiceOptions>;
}
