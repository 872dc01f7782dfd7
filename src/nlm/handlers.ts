// One handler per NLM procedure (the table mapping procedure numbers to them is procedures.ts).
// Handlers are thin: the codec decoded the arguments, the handler checks trust, asks the lock
// table and answers. Lock state lives in the table; the handlers keep only pending GRANTED
// callbacks and which hosts are monitored.
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
//   within grantTimeoutMs is undone (Linux retries for ever) unless the client confirmed it
//   meanwhile (see GrantCallbacks).
// - A LOCK whose open of the file starts breaking a lease or an NFSv4 delegation gets no reply
//   at all (nlm_drop_reply, as Linux's lockd answers nfserr_jukebox): the client sends it again.
import type { Logger } from 'pino';
import { isLoopback } from '../net';
import { AUTH_SYS, DROP_REPLY, RpcAcceptError, RpcAuthError, type CallContext } from '../rpc/types';
import { XdrWriter } from '../xdr';
import { hostKey, type BlockGranted, type ClientHost, type LockRequest, type LockStatus, type ShareAccess, type ShareMode, type ShareRequest } from '../locks/types';
import * as C from './codec';
import { RpcClientPool } from '../rpc';
import { callbackCredential, GrantCallbacks, LockManagerCaller, ownerRangeMeets, type CallbackTarget, type Waiter } from './callbacks';
import { MonitoredHosts } from './hosts';
import { NlmStat, statusCode } from './protocol';
import type { ExportPolicy, NlmLockTable, NlmRefusalReason, NlmServiceDeps, NlmServiceOptions } from './deps';

const AUTH_TOOWEAK = 5;
const PRIVILEGED_PORT_LIMIT = 1024;
const allow: ExportPolicy = () => ({ allowed: true, secure: false });
const NO_OH = Buffer.alloc(0);
/** The table's answers that are this server's refusals; the others (denied, blocked, grace) are lock traffic. */
const REFUSALS: Partial<Record<LockStatus, NlmRefusalReason>> = { stale_fh: 'stale-handle', denied_nolocks: 'no-locks', rofs: 'read-only', failed: 'failed' };

/** A handler's answer: at once, or once the host is monitored. */
export type Answer<R> = R | Promise<R>;
/** LOCK's answer: none at all (DROP_REPLY) while a lease on the file is being broken. */
type LockReply = C.NlmRes | typeof DROP_REPLY;
export const then = <T, R>(v: Answer<T>, f: (t: T) => R): Answer<R> => (v instanceof Promise ? v.then(f) : f(v));

const res = (cookie: Buffer, status: LockStatus, vers: number): C.NlmRes => ({ cookie, stat: statusCode(status, vers) });

type How = { monitor: boolean; async: boolean };
const LOCK: How = { monitor: true, async: false };
const LOCK_MSG: How = { monitor: true, async: true };
const NM_LOCK: How = { monitor: false, async: false };
/** Client addresses whose last host key is kept; past it the cache starts again. */
const HOST_KEYS = 4096;

export class NlmHandlers {
  readonly grants: GrantCallbacks;
  readonly monitored: MonitoredHosts | undefined;
  private readonly table: NlmLockTable;
  private readonly log: Logger | undefined;
  private readonly policy: ExportPolicy;
  private readonly caller: LockManagerCaller;
  private readonly ownRpc: RpcClientPool | undefined;
  /**
   * Per client address, the caller_name it last sent and their host key: a client sends the same
   * name on every call, and every map on the way (the table's hosts, the monitored hosts) then
   * hashes one flat string, not a new one per call.
   */
  private readonly hostKeys = new Map<string, { callerName: string; key: string }>();

  constructor(private readonly deps: NlmServiceDeps, private readonly opts: NlmServiceOptions) {
    const now = deps.now ?? Date.now;
    this.table = deps.table;
    this.log = deps.logger;
    this.policy = deps.exportPolicy ?? allow;
    this.ownRpc = deps.rpc ? undefined : new RpcClientPool({ cred: callbackCredential(opts.serverName) });
    this.caller = new LockManagerCaller(deps.rpc ?? this.ownRpc!, { portCacheMs: opts.portCacheMs, callTimeoutMs: opts.callbackTimeoutMs, now });
    this.grants = new GrantCallbacks(this.caller, (g) => this.undo(g), {
      timeoutMs: opts.grantTimeoutMs, retryInitialMs: opts.grantRetryInitialMs, retryMaxMs: opts.grantRetryMaxMs, serverName: opts.serverName,
    }, this.log, now);
    this.monitored = deps.monitor
      ? new MonitoredHosts(deps.monitor, {
        idleMs: opts.hostIdleMs, gcIntervalMs: opts.hostGcIntervalMs, now, hostsAt: (a) => this.table.hostsAt(a),
        onError: (err, host, address) => this.log?.warn({ err: String(err), client: host.key, serverAddress: address }, 'host monitor call failed'),
      })
      : undefined;
  }

  // ---- the procedures ----

  test(a: C.NlmTestArgs, ctx: CallContext): C.NlmTestRes {
    const req = this.prepare(a.lock, a.exclusive, ctx);
    if (typeof req === 'string') return res(a.cookie, req, ctx.vers);
    const r = this.table.test(req);
    if (r.status !== 'denied') return res(a.cookie, this.told(r.status, a.lock.callerName, ctx), ctx.vers);
    const h = r.holder;
    // The holder's oh is its client's own token: kept private, as Linux's nlmsvc_testlock does.
    return { cookie: a.cookie, stat: NlmStat.denied, holder: { exclusive: h.exclusive, svid: h.owner.svid, oh: NO_OH, ...C.wireRange(ctx.vers, h.offset, h.length) } };
  }

  /** LOCK: the host is monitored first. */
  lock(a: C.NlmLockArgs, ctx: CallContext): Answer<LockReply> {
    return this.lockWith(a, ctx, LOCK);
  }

  /** LOCK_MSG: as LOCK; a later grant goes out as GRANTED_MSG. */
  lockMsg(a: C.NlmLockArgs, ctx: CallContext): Answer<LockReply> {
    return this.lockWith(a, ctx, LOCK_MSG);
  }

  /** NM_LOCK: a non-monitored lock (the client does not run statd). */
  nmLock(a: C.NlmLockArgs, ctx: CallContext): Answer<LockReply> {
    return this.lockWith(a, ctx, NM_LOCK);
  }

  cancel(a: C.NlmCancelArgs, ctx: CallContext): C.NlmRes {
    const req = this.prepare(a.lock, a.exclusive, ctx);
    if (typeof req === 'string') return res(a.cookie, req, ctx.vers);
    let status = this.table.cancel(req);
    if (status !== 'granted') {
      // Granted while the client gave up waiting: withdraw the callback and undo the grant.
      const same = (l: { fh: Buffer; owner: { host: string; svid: number; oh: Buffer }; offset: bigint; length: bigint }): boolean =>
        l.owner.host === req.owner.host && l.owner.svid === req.owner.svid && l.offset === req.offset && l.length === req.length && l.owner.oh.equals(req.owner.oh) && l.fh.equals(req.fh);
      const granted = this.grants.withdraw(req.owner.host, same);
      if (granted) this.undo(granted);
      // Nothing of this owner's to cancel is success, as in Linux's nlmsvc_cancel_blocked.
      if (status === 'denied') status = 'granted';
    }
    this.monitored?.touch(req.owner.host, ctx.local.address);
    return res(a.cookie, this.told(status, a.lock.callerName, ctx), ctx.vers);
  }

  unlock(a: C.NlmUnlockArgs, ctx: CallContext): C.NlmRes {
    const req = this.prepare(a.lock, false, ctx);
    if (typeof req === 'string') return res(a.cookie, req, ctx.vers);
    this.monitored?.touch(req.owner.host, ctx.local.address);
    // The client knows it holds the range (Linux nlmsvc_unlock: a GRANTED_RES lost, then UNLOCK).
    this.confirmed(req);
    return res(a.cookie, this.told(this.table.unlock(req), a.lock.callerName, ctx), ctx.vers);
  }

  /** We are a server: a GRANTED sent to us matches no blocked request of ours (Linux nlmclnt_grant). */
  granted(a: C.NlmTestArgs, ctx: CallContext): C.NlmRes {
    return res(a.cookie, 'denied', ctx.vers);
  }

  /** GRANTED_RES: the client's answer to a GRANTED_MSG. */
  grantedRes(a: C.NlmRes, ctx: CallContext): void {
    if (!this.grants.acknowledge(ctx.peer.address, a.cookie, a.stat)) this.log?.debug({ peer: ctx.peer }, 'GRANTED_RES for no pending grant');
  }

  share(a: C.NlmShareArgs, ctx: CallContext): C.NlmShareRes {
    const refused = this.exportRefusal(a.share.fh, a.share.callerName, ctx, false);
    const status = refused ?? this.told(this.table.share(this.shareRequest(a.share, ctx), a.reclaim), a.share.callerName, ctx);
    return { cookie: a.cookie, stat: statusCode(status, ctx.vers), sequence: 0 };
  }

  unshare(a: C.NlmShareArgs, ctx: CallContext): C.NlmShareRes {
    const refused = this.exportRefusal(a.share.fh, a.share.callerName, ctx, false);
    const status = refused ?? this.told(this.table.unshare(this.shareRequest(a.share, ctx)), a.share.callerName, ctx);
    return { cookie: a.cookie, stat: statusCode(status, ctx.vers), sequence: 0 };
  }

  freeAll(a: C.NlmNotify, ctx: CallContext): void {
    const key = this.hostKey(a.name, ctx.peer.address);
    // No GRANTED may follow FREE_ALL, nor undo a lock taken after it.
    this.grants.forgetOfHost(key);
    const counts = this.table.freeAll(key);
    this.log?.info({ client: key, serverAddress: ctx.local.address, ...counts }, 'FREE_ALL');
  }

  /** Linux's statd → lockd SM_NOTIFY (procedure 16). */
  smNotify(a: C.NlmReboot, ctx: CallContext): void {
    if (!isLoopback(ctx.peer.address) || ctx.peer.port >= PRIVILEGED_PORT_LIMIT) {
      this.log?.warn({ peer: ctx.peer, monName: a.monName }, 'SM_NOTIFY callback from a non-local or unprivileged sender refused');
      throw new RpcAcceptError('SYSTEM_ERR', 'SM_NOTIFY only from local statd');
    }
    this.deps.onReboot?.({ ...a, priv: Buffer.from(a.priv), from: ctx.peer });
  }

  // ---- trust and requests ----

  requireAuth(ctx: CallContext): void {
    if (this.opts.requireAuthSys && ctx.cred.flavor !== AUTH_SYS) throw new RpcAuthError(AUTH_TOOWEAK, 'AUTH_SYS required');
  }

  private lockWith(a: C.NlmLockArgs, ctx: CallContext, how: How): Answer<LockReply> {
    const req = this.prepare(a.lock, a.exclusive, ctx);
    if (typeof req === 'string') return res(a.cookie, req, ctx.vers);
    if (!how.monitor || !this.monitored) return this.lockNow(a, ctx, how, req);
    const monitored = this.monitored.ensure(this.clientHost(a.lock.callerName, ctx), ctx.local.address);
    if (monitored === true) return this.lockNow(a, ctx, how, req); // the common case: no closure per call
    if (monitored === false) return this.unmonitored(a, ctx);
    return monitored.then((ok) => (ok ? this.lockNow(a, ctx, how, req) : this.unmonitored(a, ctx)));
  }

  private unmonitored(a: C.NlmLockArgs, ctx: CallContext): C.NlmRes {
    return res(a.cookie, this.told('denied_nolocks', a.lock.callerName, ctx, 'unmonitored'), ctx.vers);
  }

  /** LOCK once the host is monitored. */
  private lockNow(a: C.NlmLockArgs, ctx: CallContext, how: How, req: LockRequest): Answer<LockReply> {
    // Only a blocking request can be queued: only it needs what a later grant goes out with.
    const status = this.table.lock(req, a.block ? { block: true, reclaim: a.reclaim, waiter: this.waiter(a, ctx, how) } : { block: false, reclaim: a.reclaim });
    if (status === 'drop_reply') {
      this.log?.debug({ client: req.owner.host, serverAddress: req.serverAddress }, 'LOCK not answered: a lease on the file is being broken (the client sends it again)');
      return DROP_REPLY;
    }
    if (status !== 'granted') return res(a.cookie, this.told(status, a.lock.callerName, ctx), ctx.vers);
    // A re-sent blocked LOCK answered granted (Linux clients re-send every 30 s) confirms a pending grant.
    this.confirmed(req);
    const durable = this.deps.durable?.();
    if (!durable) return res(a.cookie, status, ctx.vers);
    return durable.then(
      () => res(a.cookie, status, ctx.vers),
      (err: unknown) => {
        // Not journaled, so not kept through a move: taken back, and the client told to try later.
        this.log?.error({ err: (err as Error).message, host: req.owner.host, address: req.serverAddress }, `a grant to ${req.owner.host} through ${req.serverAddress} could not be journaled: taken back (denied_nolocks)`);
        this.table.unlock(req);
        return res(a.cookie, 'denied_nolocks', ctx.vers);
      },
    );
  }

  /** Builds, if the request is queued, what its grant needs until then: copies, not views into the receive buffer. */
  private waiter(a: C.NlmLockArgs, ctx: CallContext, how: How): () => Waiter {
    return () => ({
      target: this.target(ctx), cookie: Buffer.from(a.cookie), exclusive: a.exclusive, async: how.async,
      lock: { ...a.lock, fh: Buffer.from(a.lock.fh), oh: Buffer.from(a.lock.oh) },
    });
  }

  private clientHost(callerName: string, ctx: CallContext): ClientHost {
    return { key: this.hostKey(callerName, ctx.peer.address), callerName, address: ctx.peer.address };
  }

  /** hostKey(callerName, address), the same string as last time for the same pair. */
  private hostKey(callerName: string, address: string): string {
    const last = this.hostKeys.get(address);
    if (last !== undefined && last.callerName === callerName) return last.key;
    if (this.hostKeys.size >= HOST_KEYS) this.hostKeys.clear();
    const key = hostKey(callerName, address);
    this.hostKeys.set(address, { callerName, key });
    return key;
  }

  /** The table's answer, told to onRefused when it is this server's refusal. */
  private told(status: LockStatus, callerName: string, ctx: CallContext, reason = REFUSALS[status]): LockStatus {
    if (reason !== undefined) this.deps.onRefused?.({ callerName, status, reason }, ctx);
    return status;
  }

  /** undefined when the export lets the peer in, else the status to answer. */
  private exportRefusal(fh: Buffer, callerName: string, ctx: CallContext, write: boolean): LockStatus | undefined {
    const p = this.policy(fh, ctx.peer, ctx, callerName, write);
    if (!p.allowed) return p.refusal ?? 'failed';
    if (p.secure && ctx.peer.port >= PRIVILEGED_PORT_LIMIT) return 'failed';
    return undefined;
  }

  /** The table request for a wire lock, or the status when its export refuses it. */
  private prepare(l: C.NlmLock, exclusive: boolean, ctx: CallContext): LockRequest | LockStatus {
    const range = C.tableRange(ctx.vers, l.offset, l.length);
    return this.exportRefusal(l.fh, l.callerName, ctx, exclusive) ?? {
      fh: l.fh, owner: { host: this.hostKey(l.callerName, ctx.peer.address), svid: l.svid, oh: l.oh }, exclusive, offset: range.offset, length: range.length, serverAddress: ctx.local.address,
    };
  }

  private shareRequest(s: C.NlmShare, ctx: CallContext): ShareRequest {
    return {
      fh: s.fh, owner: { host: this.hostKey(s.callerName, ctx.peer.address), oh: s.oh },
      mode: s.mode as ShareMode, access: s.access as ShareAccess, serverAddress: ctx.local.address,
    };
  }

  /**
   * The client now holds, or let go of, this owner's range by another path than the GRANTED
   * callback: the pending grants it meets are confirmed, never to be undone.
   */
  private confirmed(req: LockRequest): void {
    this.grants.forgetOfHost(req.owner.host, (l) => ownerRangeMeets(l, req));
  }

  /** Takes back a grant the client never confirmed: the owner gets exactly what it held before. */
  private undo(g: BlockGranted): void {
    this.table.undoGrant(g);
  }

  // ---- callbacks ----

  private target(ctx: CallContext): CallbackTarget {
    return {
      address: ctx.peer.address, source: ctx.local.address, vers: ctx.vers,
      transport: this.opts.callbackTransport === 'same' ? ctx.transport : this.opts.callbackTransport,
    };
  }

  /** A *_MSG's answer, as the matching *_RES call to the client's lock manager. */
  sendRes(ctx: CallContext, proc: number, encode: (w: XdrWriter) => void): void {
    const w = new XdrWriter(128);
    encode(w);
    this.caller.call(this.target(ctx), proc, w.toBuffer()).catch((err) =>
      this.log?.warn({ err: String(err), peer: ctx.peer, serverAddress: ctx.local.address, proc }, 'NLM *_RES callback failed'));
  }

  close(): void {
    this.grants.close();
    this.monitored?.close();
    this.ownRpc?.close();
  }
}
