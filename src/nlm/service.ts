// The NLM service: the program versions (1, 3, 4) the daemon registers on the RPC server.
// Handlers are thin: decode (codec), check trust, ask the lock table, answer. Lock state lives
// in the table; the service keeps only pending GRANTED callbacks and which hosts are monitored.
//
// Linux behaviours followed (fs/lockd/svcproc.c, svc4proc.c, svc.c, host.c):
// - *_MSG calls get an empty RPC reply at once and their answer as a *_RES call to the client's
//   lock manager; incoming *_RES get an empty reply too.
// - A host is monitored (SM_MON) before LOCK, not before NM_LOCK or SHARE; a host that cannot be
//   monitored gets denied_nolocks.
// - v1/v3 cannot carry deadlck/rofs/stale_fh/fbig/failed: see statusCode.
// - SM_NOTIFY (proc 16) is accepted only from a privileged port on a loopback address.
// - CANCEL of a request that is not queued answers granted.
// - TEST's holder has an empty oh (svclock.c nlmsvc_testlock): another host never learns it.
// Deliberate differences:
// - State-changing procedures need AUTH_SYS by default (Linux also takes AUTH_NULL and leaves
//   the decision to nfsd's export check): AUTH_ERROR/AUTH_TOOWEAK; `requireAuthSys: false` to allow.
// - A client host is (caller_name, source address): another machine using the same name is
//   another host and cannot unlock, cancel or FREE_ALL what it does not hold.
// - GRANTED carries the original LOCK's cookie (Linux makes a fresh one) and is GRANTED_MSG only
//   when the LOCK was LOCK_MSG (Linux always sends GRANTED_MSG); a grant never acknowledged
//   within grantTimeoutMs is released (Linux retries for ever) unless the client confirmed it
//   meanwhile (see GrantCallbacks).
import os from 'node:os';
import type { Logger } from 'pino';
import { AUTH_SYS, RpcAcceptError, RpcAuthError, type CallContext, type Endpoint, type Procedure, type ProgramVersion } from '../rpc/types';
import { XdrWriter, type XdrReader } from '../xdr';
import { hostKey, type BlockGranted, type ClientHost, type DropCounts, type LockOptions, type LockRequest, type LockStatus, type ShareAccess, type ShareMode, type ShareRequest, type TestResult } from '../locks/types';
import * as C from './codec';
import { GrantCallbacks, LockManagerCaller, ownerRangeMeets, rpcCaller, type CallbackTarget, type NlmRpcCaller, type Waiter } from './callbacks';
import { MonitoredHosts, type HostMonitor } from './hosts';
import { NLM_PROG, NlmProc, NlmStat, statusCode, type NlmVersion } from './protocol';

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

export interface NlmRebootNotice extends C.NlmReboot {
  from: Endpoint;
}

export interface NlmServiceDeps {
  table: NlmLockTable;
  /** Callbacks (*_RES, GRANTED) go out through it. Default: rpcCaller over src/rpc's RpcClient. */
  rpc?: NlmRpcCaller;
  monitor?: HostMonitor;
  exportPolicy?: ExportPolicy;
  logger?: Logger;
  /** Linux's statd → lockd SM_NOTIFY (proc 16), already checked to come from a local privileged port. */
  onReboot?(notice: NlmRebootNotice): void;
  now?: () => number;
  options?: Partial<NlmServiceOptions>;
}

export interface NlmService {
  readonly programs: ProgramVersion[];
  /** Give to the LockTable as its onBlockGranted: sends GRANTED / GRANTED_MSG. */
  onBlockGranted(g: BlockGranted): void;
  /**
   * The address went away (its locks dropped): forget its monitored hosts without unmonitoring
   * (the records stay for the node taking it over) and its pending GRANTED callbacks, so that a
   * late callback failure cannot release a lock reclaimed in the meantime.
   */
  forgetAddress(serverAddress: string): void;
  /** The host rebooted (its locks dropped): forget it without unmonitoring, and its pending grants. */
  forgetHost(hostKey: string): void;
  /** Unmonitors idle hosts now (also runs every hostGcIntervalMs). */
  collectHosts(): number;
  pendingGrants(): number;
  close(): void;
}

const AUTH_TOOWEAK = 5;
const PRIVILEGED_PORT_LIMIT = 1024;
const allow: ExportPolicy = () => ({ allowed: true, secure: false });
const NO_OH = Buffer.alloc(0);
const isLoopback = (a: string): boolean => a.startsWith('127.') || a === '::1';

type Answer<R> = R | Promise<R>;
const then = <T, R>(v: Answer<T>, f: (t: T) => R): Answer<R> => (v instanceof Promise ? v.then(f) : f(v));

export function createNlmService(deps: NlmServiceDeps): NlmService {
  const opts: NlmServiceOptions = { ...defaultNlmServiceOptions, ...deps.options };
  const { table, logger: log } = deps;
  const now = deps.now ?? Date.now;
  const policy = deps.exportPolicy ?? allow;
  const ownRpc = deps.rpc ? undefined : rpcCaller({ machineName: opts.serverName });
  const caller = new LockManagerCaller(deps.rpc ?? ownRpc!, { portCacheMs: opts.portCacheMs, callTimeoutMs: opts.callbackTimeoutMs, now });
  // Taking back a grant the client never confirmed (GRANTED refused or unanswered, CANCEL of a granted block).
  // The owner gets back exactly what it held before (an upgrade's shared lock), never nothing.
  const undo = (g: BlockGranted): void => table.undoGrant(g);
  const grants = new GrantCallbacks(caller, undo, {
    timeoutMs: opts.grantTimeoutMs, retryInitialMs: opts.grantRetryInitialMs, retryMaxMs: opts.grantRetryMaxMs, serverName: opts.serverName,
  }, log, now);
  const monitored = deps.monitor
    ? new MonitoredHosts(deps.monitor, {
      idleMs: opts.hostIdleMs, gcIntervalMs: opts.hostGcIntervalMs, now, hostsAt: (a) => table.hostsAt(a),
      onError: (err, host, address) => log?.warn({ err: String(err), client: host.key, serverAddress: address }, 'host monitor call failed'),
    })
    : undefined;

  // ---- trust ----

  const requireAuth = (ctx: CallContext): void => {
    if (opts.requireAuthSys && ctx.cred.flavor !== AUTH_SYS) throw new RpcAuthError(AUTH_TOOWEAK, 'AUTH_SYS required');
  };

  const clientHost = (callerName: string, ctx: CallContext): ClientHost =>
    ({ key: hostKey(callerName, ctx.peer.address), callerName, address: ctx.peer.address });

  /** undefined when the export lets the peer in, else the status to answer. */
  const exportRefusal = (fh: Buffer, ctx: CallContext): LockStatus | undefined => {
    const p = policy(fh, ctx.peer, ctx);
    if (!p.allowed || (p.secure && ctx.peer.port >= PRIVILEGED_PORT_LIMIT)) return 'failed';
    return undefined;
  };

  const request = (l: C.NlmLock, exclusive: boolean, ctx: CallContext, offset: bigint, length: bigint): LockRequest => ({
    fh: l.fh, owner: { host: hostKey(l.callerName, ctx.peer.address), svid: l.svid, oh: l.oh }, exclusive, offset, length, serverAddress: ctx.local.address,
  });

  /** The table request for a wire lock, or the status when its export refuses it. */
  const prepare = (l: C.NlmLock, exclusive: boolean, ctx: CallContext): LockRequest | LockStatus => {
    const range = C.tableRange(ctx.vers, l.offset, l.length);
    return exportRefusal(l.fh, ctx) ?? request(l, exclusive, ctx, range.offset, range.length);
  };

  const res = (cookie: Buffer, status: LockStatus, vers: number): C.NlmRes => ({ cookie, stat: statusCode(status, vers) });

  /**
   * The client now holds, or let go of, this owner's range by another path than the GRANTED
   * callback: the pending grants it meets are confirmed, never to be undone.
   */
  const confirmed = (req: LockRequest): void => {
    grants.forgetOfHost(req.owner.host, (l) => ownerRangeMeets(l, req));
  };

  // ---- procedures' cores: arguments in, result out ----

  function test(a: C.NlmTestArgs, ctx: CallContext): C.NlmTestRes {
    const req = prepare(a.lock, a.exclusive, ctx);
    if (typeof req === 'string') return res(a.cookie, req, ctx.vers);
    const r = table.test(req);
    if (r.status !== 'denied') return res(a.cookie, r.status, ctx.vers);
    const h = r.holder;
    // The holder's oh is its client's own token: kept private, as Linux's nlmsvc_testlock does.
    return { cookie: a.cookie, stat: NlmStat.denied, holder: { exclusive: h.exclusive, svid: h.owner.svid, oh: NO_OH, ...C.wireRange(ctx.vers, h.offset, h.length) } };
  }

  function lock(a: C.NlmLockArgs, ctx: CallContext, how: { monitor: boolean; async: boolean }): Answer<C.NlmRes> {
    const req = prepare(a.lock, a.exclusive, ctx);
    if (typeof req === 'string') return res(a.cookie, req, ctx.vers);
    const go = (ok: boolean): C.NlmRes => {
      if (!ok) return res(a.cookie, 'denied_nolocks', ctx.vers);
      // Built only if the request is queued; kept until the grant: copies, not views into the receive buffer.
      const waiter = (): Waiter => ({
        target: target(ctx), cookie: Buffer.from(a.cookie), exclusive: a.exclusive, async: how.async,
        lock: { ...a.lock, fh: Buffer.from(a.lock.fh), oh: Buffer.from(a.lock.oh) },
      });
      const status = table.lock(req, { block: a.block, reclaim: a.reclaim, waiter });
      // A re-sent blocked LOCK answered granted (Linux clients re-send every 30 s) confirms a pending grant.
      if (status === 'granted') confirmed(req);
      return res(a.cookie, status, ctx.vers);
    };
    if (!how.monitor || !monitored) return go(true);
    return then(monitored.ensure(clientHost(a.lock.callerName, ctx), ctx.local.address), go);
  }

  function cancel(a: C.NlmCancelArgs, ctx: CallContext): C.NlmRes {
    const req = prepare(a.lock, a.exclusive, ctx);
    if (typeof req === 'string') return res(a.cookie, req, ctx.vers);
    let status = table.cancel(req);
    if (status !== 'granted') {
      // Granted while the client gave up waiting: withdraw the callback and release the lock.
      const same = (l: { fh: Buffer; owner: { host: string; svid: number; oh: Buffer }; offset: bigint; length: bigint }): boolean =>
        l.owner.host === req.owner.host && l.owner.svid === req.owner.svid && l.offset === req.offset && l.length === req.length && l.owner.oh.equals(req.owner.oh) && l.fh.equals(req.fh);
      const granted = grants.withdraw(req.owner.host, same);
      if (granted) undo(granted);
      // Nothing of this owner's to cancel is success, as in Linux's nlmsvc_cancel_blocked.
      if (status === 'denied') status = 'granted';
    }
    monitored?.touch(req.owner.host, ctx.local.address);
    return res(a.cookie, status, ctx.vers);
  }

  function unlock(a: C.NlmUnlockArgs, ctx: CallContext): C.NlmRes {
    const req = prepare(a.lock, false, ctx);
    if (typeof req === 'string') return res(a.cookie, req, ctx.vers);
    monitored?.touch(req.owner.host, ctx.local.address);
    // The client knows it holds the range (Linux nlmsvc_unlock: a GRANTED_RES lost, then UNLOCK).
    confirmed(req);
    return res(a.cookie, table.unlock(req), ctx.vers);
  }

  /** We are a server: a GRANTED sent to us matches no blocked request of ours (Linux nlmclnt_grant). */
  const granted = (a: C.NlmTestArgs, ctx: CallContext): C.NlmRes => res(a.cookie, 'denied', ctx.vers);

  const shareRequest = (s: C.NlmShare, ctx: CallContext): ShareRequest => ({
    fh: s.fh, owner: { host: hostKey(s.callerName, ctx.peer.address), oh: s.oh },
    mode: s.mode as ShareMode, access: s.access as ShareAccess, serverAddress: ctx.local.address,
  });

  function share(a: C.NlmShareArgs, ctx: CallContext): C.NlmShareRes {
    const refused = exportRefusal(a.share.fh, ctx);
    const status = refused ?? table.share(shareRequest(a.share, ctx), a.reclaim);
    return { cookie: a.cookie, stat: statusCode(status, ctx.vers), sequence: 0 };
  }

  function unshare(a: C.NlmShareArgs, ctx: CallContext): C.NlmShareRes {
    const refused = exportRefusal(a.share.fh, ctx);
    const status = refused ?? table.unshare(shareRequest(a.share, ctx));
    return { cookie: a.cookie, stat: statusCode(status, ctx.vers), sequence: 0 };
  }

  function freeAll(a: C.NlmNotify, ctx: CallContext): void {
    const key = hostKey(a.name, ctx.peer.address);
    // No GRANTED may follow FREE_ALL, nor undo a lock taken after it.
    grants.forgetOfHost(key);
    const counts = table.freeAll(key);
    log?.info({ client: key, serverAddress: ctx.local.address, ...counts }, 'FREE_ALL');
  }

  function reboot(a: C.NlmReboot, ctx: CallContext): void {
    if (!isLoopback(ctx.peer.address) || ctx.peer.port >= PRIVILEGED_PORT_LIMIT) {
      log?.warn({ peer: ctx.peer, monName: a.monName }, 'SM_NOTIFY callback from a non-local or unprivileged sender refused');
      throw new RpcAcceptError('SYSTEM_ERR', 'SM_NOTIFY only from local statd');
    }
    deps.onReboot?.({ ...a, priv: Buffer.from(a.priv), from: ctx.peer });
  }

  // ---- callbacks ----

  const target = (ctx: CallContext): CallbackTarget => ({
    address: ctx.peer.address, source: ctx.local.address, vers: ctx.vers,
    transport: opts.callbackTransport === 'same' ? ctx.transport : opts.callbackTransport,
  });

  function sendRes(ctx: CallContext, proc: number, encode: (w: XdrWriter) => void): void {
    const w = new XdrWriter(128);
    encode(w);
    caller.call(target(ctx), proc, w.toBuffer()).catch((err) =>
      log?.warn({ err: String(err), peer: ctx.peer, serverAddress: ctx.local.address, proc }, 'NLM *_RES callback failed'));
  }

  // ---- procedure tables ----

  const voidArgs = (r: XdrReader): void => void r;
  const voidResult = (): void => {};
  const procs = new Map<number, (vers: number) => Procedure<any, any>>();
  const def = (proc: number, make: (vers: number) => Omit<Procedure<any, any>, 'name'>): void => {
    const name = Object.entries(NlmProc).find(([, n]) => n === proc)![0];
    procs.set(proc, (vers) => ({ name, ...make(vers) }));
  };
  const sync = <A, R>(proc: number, decode: (r: XdrReader, v: number) => A, encode: (w: XdrWriter, v: number, r: R) => void, core: (a: A, ctx: CallContext) => Answer<R>, auth: boolean, idempotent = false): void =>
    def(proc, (vers) => ({
      decodeArgs: (r) => decode(r, vers),
      encodeResult: (w, r: R) => encode(w, vers, r),
      handle: (a: A, ctx) => {
        if (auth) requireAuth(ctx);
        return core(a, ctx);
      },
      idempotent,
    }));
  // A *_MSG: same arguments, answered by the *_RES call; the RPC reply itself is empty.
  const message = <A, R>(proc: number, resProc: number, decode: (r: XdrReader, v: number) => A, encode: (w: XdrWriter, v: number, r: R) => void, core: (a: A, ctx: CallContext) => Answer<R>, auth: boolean): void =>
    def(proc, (vers) => ({
      decodeArgs: (r) => decode(r, vers),
      encodeResult: voidResult,
      handle: (a: A, ctx) => {
        if (auth) requireAuth(ctx);
        return then(core(a, ctx), (result) => {
          sendRes(ctx, resProc, (w) => encode(w, vers, result));
        });
      },
    }));
  const resArrival = <A>(proc: number, decode: (r: XdrReader, v: number) => A, onRes: (a: A, ctx: CallContext) => void): void =>
    def(proc, (vers) => ({ decodeArgs: (r) => decode(r, vers), encodeResult: voidResult, handle: (a: A, ctx) => onRes(a, ctx) }));

  const encRes = (w: XdrWriter, _v: number, r: C.NlmRes): void => C.encodeRes(w, r);
  const encShareRes = (w: XdrWriter, _v: number, r: C.NlmShareRes): void => C.encodeShareRes(w, r);
  const lockSync = (a: C.NlmLockArgs, ctx: CallContext): Answer<C.NlmRes> => lock(a, ctx, { monitor: true, async: false });
  const ignoreRes = (): void => {};

  def(NlmProc.NULL, () => ({ decodeArgs: voidArgs, encodeResult: voidResult, handle: () => undefined, idempotent: true }));
  sync(NlmProc.TEST, C.decodeTestArgs, C.encodeTestRes, test, false, true);
  sync(NlmProc.LOCK, C.decodeLockArgs, encRes, lockSync, true);
  sync(NlmProc.CANCEL, C.decodeCancelArgs, encRes, cancel, true);
  sync(NlmProc.UNLOCK, C.decodeUnlockArgs, encRes, unlock, true);
  sync(NlmProc.GRANTED, C.decodeTestArgs, encRes, granted, false);
  message(NlmProc.TEST_MSG, NlmProc.TEST_RES, C.decodeTestArgs, C.encodeTestRes, test, false);
  message(NlmProc.LOCK_MSG, NlmProc.LOCK_RES, C.decodeLockArgs, encRes, (a: C.NlmLockArgs, ctx) => lock(a, ctx, { monitor: true, async: true }), true);
  message(NlmProc.CANCEL_MSG, NlmProc.CANCEL_RES, C.decodeCancelArgs, encRes, cancel, true);
  message(NlmProc.UNLOCK_MSG, NlmProc.UNLOCK_RES, C.decodeUnlockArgs, encRes, unlock, true);
  message(NlmProc.GRANTED_MSG, NlmProc.GRANTED_RES, C.decodeTestArgs, encRes, granted, false);
  resArrival(NlmProc.TEST_RES, C.decodeTestRes, ignoreRes);
  resArrival(NlmProc.LOCK_RES, C.decodeRes, ignoreRes);
  resArrival(NlmProc.CANCEL_RES, C.decodeRes, ignoreRes);
  resArrival(NlmProc.UNLOCK_RES, C.decodeRes, ignoreRes);
  resArrival(NlmProc.GRANTED_RES, C.decodeRes, (a: C.NlmRes, ctx) => {
    if (!grants.acknowledge(ctx.peer.address, a.cookie, a.stat)) log?.debug({ peer: ctx.peer }, 'GRANTED_RES for no pending grant');
  });
  sync(NlmProc.SM_NOTIFY, (r) => C.decodeReboot(r), voidResult, reboot, false);
  sync(NlmProc.SHARE, (r) => C.decodeShareArgs(r), encShareRes, share, true);
  sync(NlmProc.UNSHARE, (r) => C.decodeShareArgs(r), encShareRes, unshare, true);
  sync(NlmProc.NM_LOCK, C.decodeLockArgs, encRes, (a: C.NlmLockArgs, ctx) => lock(a, ctx, { monitor: false, async: false }), true);
  sync(NlmProc.FREE_ALL, (r) => C.decodeNotify(r), voidResult, freeAll, true);

  const V1_PROCS = new Set<number>([...procs.keys()].filter((p) => p <= NlmProc.SM_NOTIFY));
  const programs: ProgramVersion[] = opts.versions.map((vers) => ({
    prog: NLM_PROG,
    vers,
    procedures: new Map([...procs].filter(([p]) => vers !== 1 || V1_PROCS.has(p)).map(([p, make]) => [p, make(vers)])),
  }));

  return {
    programs,
    onBlockGranted: (g) => grants.start(g),
    forgetAddress: (a) => {
      monitored?.forgetAddress(a);
      grants.forget((l) => l.serverAddress === a);
    },
    forgetHost: (h) => {
      monitored?.forgetHost(h);
      grants.forgetOfHost(h);
    },
    collectHosts: () => monitored?.sweep() ?? 0,
    pendingGrants: () => grants.size,
    close: () => {
      grants.close();
      monitored?.close();
      ownRpc?.close();
    },
  };
}

