// What the NLM service is given: the lock table as it uses it, the export policy, its options and
// its other dependencies. Below both the handlers and the service, which composes them: nothing
// here imports either.
import os from 'node:os';
import type { Logger } from 'pino';
import type { CallContext, Endpoint } from '../rpc/types';
import type { BlockGranted, DropCounts, LockOptions, LockRequest, LockStatus, ShareRequest, TestResult } from '../locks/types';
import type { NlmReboot } from './codec';
import type { NlmRpcCaller } from './callbacks';
import type { HostMonitor } from './hosts';
import type { NlmVersion } from './protocol';

/** What the service needs of the lock table (src/locks LockTable satisfies it). */
export interface NlmLockTable {
  test(req: LockRequest): TestResult;
  lock(req: LockRequest, opts: LockOptions): LockStatus;
  cancel(req: LockRequest): LockStatus;
  unlock(req: LockRequest): LockStatus;
  share(req: ShareRequest, reclaim: boolean): LockStatus;
  unshare(req: ShareRequest): LockStatus;
  freeAll(host: string): DropCounts;
  hostsAt(serverAddress: string): ReadonlySet<string>;
  undoGrant(g: BlockGranted): void;
}

/** Export policy: may this peer use this file handle, and must it come from a privileged port? */
export type ExportPolicy = (fh: Buffer, peer: Endpoint, ctx: CallContext) => { allowed: boolean; secure: boolean };

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
  /** Linux's statd → lockd SM_NOTIFY (proc 16), already checked to come from a local privileged port. */
  onReboot?(notice: NlmRebootNotice): void;
  now?: () => number;
  options?: Partial<NlmServiceOptions>;
}
