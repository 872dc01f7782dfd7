// A TypeScript NLM client (any version, UDP or TCP) for tests, the demo and lockdropctl.
// It serves its own lock manager callbacks on a port of its own: GRANTED / GRANTED_MSG for its
// blocked locks and the *_RES answers to its *_MSG calls, optionally registered with rpcbind
// so that a server finds it the way real servers do (GETPORT on the client's portmapper).
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  AUTH_SYS, NO_REPLY, RpcClient, RpcServer, getPort, registerWithRpcbind,
  type CallContext, type Credential, type Procedure, type ProgramVersion, type RpcbindRegistration, type TransportKind,
} from '../rpc';
import { XdrWriter, type XdrReader } from '../xdr';
import type { LockStatus } from '../locks/types';
import * as C from './codec';
import { NLM_PROG, NlmProc, NlmStat, statName, type NlmVersion } from './protocol';

export interface NlmClientOptions {
  server: { address: string; /** Default: asked of the server's rpcbind. */ port?: number };
  transport: TransportKind;
  vers: NlmVersion;
  callerName: string;
  /** Local address calls leave from (and the callback server listens on unless callback.address says otherwise). */
  source?: string;
  sourcePort?: number;
  /** Default AUTH_SYS as root with machine name = callerName. */
  cred?: Credential;
  timeoutMs?: number;
  /** Serve callbacks (GRANTED, *_RES). Off unless given. */
  callback?: {
    address?: string;
    port?: number;
    /** Register the callback port for NLM (this version, UDP and TCP) with the local rpcbind. */
    rpcbind?: boolean;
    /** How to answer GRANTED / GRANTED_MSG: acknowledge (default), refuse, or stay silent. See answerGranted. */
    reply?: GrantedReply;
  };
}

export type GrantedReply = 'granted' | 'denied' | 'none';

/** A lock as the client names it; offset/length default to the whole file. */
export interface LockSpec {
  fh: Buffer;
  svid: number;
  oh?: Buffer;
  offset?: bigint;
  length?: bigint;
  exclusive?: boolean;
  cookie?: Buffer;
}

export interface LockCallSpec extends LockSpec {
  block?: boolean;
  reclaim?: boolean;
  state?: number;
}

export interface ShareSpec {
  fh: Buffer;
  oh?: Buffer;
  mode: number;
  access: number;
  reclaim?: boolean;
  cookie?: Buffer;
}

export interface NlmResult {
  cookie: Buffer;
  stat: number;
  status: LockStatus;
}

export interface NlmTestResult extends NlmResult {
  holder?: C.NlmHolder;
}

export interface NlmShareResult extends NlmResult {
  sequence: number;
}

/** A GRANTED or GRANTED_MSG that reached the callback server. */
export interface GrantedCallback {
  async: boolean;
  cookie: Buffer;
  exclusive: boolean;
  lock: C.NlmLock;
  from: { address: string; port: number };
  transport: TransportKind;
}

/** A *_RES that reached the callback server. */
export interface ResCallback {
  proc: number;
  cookie: Buffer;
  stat: number;
  status: LockStatus;
  holder?: C.NlmHolder;
  from: { address: string; port: number };
  transport: TransportKind;
}

type Waiting<T> = { match: (v: T) => boolean; resolve: (v: T) => void; timer: NodeJS.Timeout };

/** Callbacks kept for a later waitGranted / waitRes. */
const MAX_UNCLAIMED = 1024;
const named = (stat: number): LockStatus => statName(stat) ?? 'failed';

export class NlmClient extends EventEmitter {
  readonly granted: GrantedCallback[] = [];
  readonly results: ResCallback[] = [];
  private readonly waitingGranted = new Set<Waiting<GrantedCallback>>();
  private readonly waitingRes = new Set<Waiting<ResCallback>>();
  private cookieSeq = randomBytes(4).readUInt32BE();
  private callbackServer: RpcServer | undefined;
  private registration: RpcbindRegistration | undefined;
  private grantedReply: GrantedReply = 'granted';

  private constructor(readonly opts: NlmClientOptions, readonly serverPort: number, private readonly rpc: RpcClient) {
    super();
  }

  static async create(opts: NlmClientOptions): Promise<NlmClient> {
    const port = opts.server.port ?? await getPort(opts.server.address, NLM_PROG, opts.vers, opts.transport, { source: opts.source, timeoutMs: opts.timeoutMs });
    if (!port) throw new Error(`NLM v${opts.vers}/${opts.transport} is not registered at ${opts.server.address}`);
    const cred = opts.cred ?? { flavor: AUTH_SYS, stamp: 0, machineName: opts.callerName, uid: 0, gid: 0, gids: [] };
    const rpc = new RpcClient({ transport: opts.transport, host: opts.server.address, port, source: opts.source, sourcePort: opts.sourcePort, cred, timeoutMs: opts.timeoutMs ?? 5_000 });
    const c = new NlmClient(opts, port, rpc);
    if (opts.callback) await c.serveCallbacks(opts.callback);
    return c;
  }

  /** From now on answer GRANTED / GRANTED_MSG this way (a client that stopped waiting answers denied). */
  answerGranted(reply: GrantedReply): void {
    this.grantedReply = reply;
  }

  /** The port the callback server listens on (0 without one). */
  get callbackPort(): number {
    return this.callbackServer?.port ?? 0;
  }

  nextCookie(): Buffer {
    const b = Buffer.alloc(4);
    b.writeUInt32BE((this.cookieSeq = (this.cookieSeq + 1) >>> 0));
    return b;
  }

  private get vers(): number { return this.opts.vers; }

  private wireLock(l: LockSpec, callerName = this.opts.callerName): C.NlmLock {
    return { callerName, fh: l.fh, oh: l.oh ?? Buffer.from(`${l.svid}@${this.opts.callerName}`), svid: l.svid, offset: l.offset ?? 0n, length: l.length ?? 0n };
  }

  private lockArgs(l: LockCallSpec): C.NlmLockArgs {
    return { cookie: l.cookie ?? this.nextCookie(), block: l.block ?? false, exclusive: l.exclusive ?? true, lock: this.wireLock(l), reclaim: l.reclaim ?? false, state: l.state ?? 1 };
  }

  private testArgs(l: LockSpec): C.NlmTestArgs {
    return { cookie: l.cookie ?? this.nextCookie(), exclusive: l.exclusive ?? true, lock: this.wireLock(l) };
  }

  private cancelArgs(l: LockCallSpec): C.NlmCancelArgs {
    return { cookie: l.cookie ?? this.nextCookie(), block: l.block ?? false, exclusive: l.exclusive ?? true, lock: this.wireLock(l) };
  }

  private unlockArgs(l: LockSpec): C.NlmUnlockArgs {
    return { cookie: l.cookie ?? this.nextCookie(), lock: this.wireLock(l) };
  }

  private shareArgs(s: ShareSpec): C.NlmShareArgs {
    return {
      cookie: s.cookie ?? this.nextCookie(), reclaim: s.reclaim ?? false,
      share: { callerName: this.opts.callerName, fh: s.fh, oh: s.oh ?? Buffer.from(`share@${this.opts.callerName}`), mode: s.mode, access: s.access },
    };
  }

  private call<R>(proc: number, encode: (w: XdrWriter) => void, decode: (r: XdrReader) => R, cred?: Credential): Promise<R> {
    return this.rpc.call(NLM_PROG, this.vers, proc, encode, decode, cred ? { cred } : {});
  }

  private res(proc: number, encode: (w: XdrWriter) => void, cred?: Credential): Promise<NlmResult> {
    return this.call(proc, encode, (r) => {
      const res = C.decodeRes(r, this.vers);
      return { ...res, status: named(res.stat) };
    }, cred);
  }

  null(): Promise<void> {
    return this.call(NlmProc.NULL, () => undefined, () => undefined);
  }

  test(l: LockSpec): Promise<NlmTestResult> {
    return this.call(NlmProc.TEST, (w) => C.encodeTestArgs(w, this.vers, this.testArgs(l)), (r) => {
      const res = C.decodeTestRes(r, this.vers);
      return { ...res, status: named(res.stat) };
    });
  }

  lock(l: LockCallSpec, cred?: Credential): Promise<NlmResult> {
    return this.res(NlmProc.LOCK, (w) => C.encodeLockArgs(w, this.vers, this.lockArgs(l)), cred);
  }

  nmLock(l: LockCallSpec): Promise<NlmResult> {
    return this.res(NlmProc.NM_LOCK, (w) => C.encodeLockArgs(w, this.vers, this.lockArgs(l)));
  }

  cancel(l: LockCallSpec): Promise<NlmResult> {
    return this.res(NlmProc.CANCEL, (w) => C.encodeCancelArgs(w, this.vers, this.cancelArgs(l)));
  }

  unlock(l: LockSpec): Promise<NlmResult> {
    return this.res(NlmProc.UNLOCK, (w) => C.encodeUnlockArgs(w, this.vers, this.unlockArgs(l)));
  }

  /** GRANTED sent to the server (as if it were a client): servers answer denied. */
  grantedCall(l: LockSpec): Promise<NlmResult> {
    return this.res(NlmProc.GRANTED, (w) => C.encodeTestArgs(w, this.vers, this.testArgs(l)));
  }

  private shareCall(proc: number, s: ShareSpec): Promise<NlmShareResult> {
    return this.call(proc, (w) => C.encodeShareArgs(w, this.shareArgs(s)), (r) => {
      const res = C.decodeShareRes(r, this.vers);
      return { ...res, status: named(res.stat) };
    });
  }

  share(s: ShareSpec): Promise<NlmShareResult> { return this.shareCall(NlmProc.SHARE, s); }
  unshare(s: ShareSpec): Promise<NlmShareResult> { return this.shareCall(NlmProc.UNSHARE, s); }

  /** FREE_ALL for this client's caller_name (or another name: a spoofing test). */
  freeAll(state = 0, name = this.opts.callerName): Promise<void> {
    return this.call(NlmProc.FREE_ALL, (w) => C.encodeNotify(w, { name, state }), () => undefined);
  }

  /** Linux's statd → lockd SM_NOTIFY (proc 16). */
  smNotify(n: C.NlmReboot): Promise<void> {
    return this.call(NlmProc.SM_NOTIFY, (w) => C.encodeReboot(w, n), () => undefined);
  }

  /** Any procedure with raw argument bytes (malformed-argument tests); resolves with the raw results. */
  raw(proc: number, args: Buffer, cred?: Credential): Promise<Buffer> {
    return this.call(proc, (w) => w.raw(args), (r) => Buffer.from(r.rest()), cred);
  }

  // ---- asynchronous (*_MSG): the answer comes to the callback server; resolve with the cookie ----

  private async message(proc: number, cookie: Buffer, encode: (w: XdrWriter) => void): Promise<Buffer> {
    await this.call(proc, encode, () => undefined);
    return cookie;
  }

  testMsg(l: LockSpec): Promise<Buffer> {
    const a = this.testArgs(l);
    return this.message(NlmProc.TEST_MSG, a.cookie, (w) => C.encodeTestArgs(w, this.vers, a));
  }

  lockMsg(l: LockCallSpec): Promise<Buffer> {
    const a = this.lockArgs(l);
    return this.message(NlmProc.LOCK_MSG, a.cookie, (w) => C.encodeLockArgs(w, this.vers, a));
  }

  cancelMsg(l: LockCallSpec): Promise<Buffer> {
    const a = this.cancelArgs(l);
    return this.message(NlmProc.CANCEL_MSG, a.cookie, (w) => C.encodeCancelArgs(w, this.vers, a));
  }

  unlockMsg(l: LockSpec): Promise<Buffer> {
    const a = this.unlockArgs(l);
    return this.message(NlmProc.UNLOCK_MSG, a.cookie, (w) => C.encodeUnlockArgs(w, this.vers, a));
  }

  grantedMsg(l: LockSpec): Promise<Buffer> {
    const a = this.testArgs(l);
    return this.message(NlmProc.GRANTED_MSG, a.cookie, (w) => C.encodeTestArgs(w, this.vers, a));
  }

  /** Sends a *_RES to the server (the server accepts and ignores all but GRANTED_RES). */
  sendRes(proc: number, res: C.NlmRes | C.NlmTestRes): Promise<void> {
    return this.call(proc, (w) => (proc === NlmProc.TEST_RES ? C.encodeTestRes(w, this.vers, res) : C.encodeRes(w, res)), () => undefined);
  }

  // ---- callbacks ----

  /** Resolves with the first GRANTED callback (already received or to come) that matches. */
  waitGranted(match: Partial<{ svid: number; fh: Buffer; cookie: Buffer }> = {}, timeoutMs = 5_000): Promise<GrantedCallback> {
    const ok = (g: GrantedCallback): boolean =>
      (match.svid === undefined || g.lock.svid === match.svid) && (!match.fh || g.lock.fh.equals(match.fh)) && (!match.cookie || g.cookie.equals(match.cookie));
    return this.wait(this.granted, this.waitingGranted, ok, timeoutMs, 'GRANTED');
  }

  /** Resolves with the *_RES answering the call with this cookie. */
  waitRes(cookie: Buffer, timeoutMs = 5_000): Promise<ResCallback> {
    return this.wait(this.results, this.waitingRes, (r) => r.cookie.equals(cookie), timeoutMs, 'NLM *_RES');
  }

  private wait<T>(seen: T[], waiting: Set<Waiting<T>>, match: (v: T) => boolean, timeoutMs: number, what: string): Promise<T> {
    const i = seen.findIndex(match);
    if (i >= 0) return Promise.resolve(seen.splice(i, 1)[0]!);
    return new Promise<T>((resolve, reject) => {
      const w: Waiting<T> = {
        match,
        resolve: (v) => {
          clearTimeout(w.timer);
          waiting.delete(w);
          resolve(v);
        },
        timer: setTimeout(() => {
          waiting.delete(w);
          reject(new Error(`no ${what} within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      waiting.add(w);
    });
  }

  private deliver<T>(v: T, seen: T[], waiting: Set<Waiting<T>>, event: string): void {
    this.emit(event, v);
    for (const w of waiting) {
      if (w.match(v)) return w.resolve(v);
    }
    seen.push(v);
    if (seen.length > MAX_UNCLAIMED) seen.shift(); // nobody waits for these: keep the newest only
  }

  private async serveCallbacks(cb: NonNullable<NlmClientOptions['callback']>): Promise<void> {
    const vers = this.vers;
    this.grantedReply = cb.reply ?? 'granted';
    const server = new RpcServer();
    server.listen({ port: cb.port ?? 0 });
    const onGranted = (a: C.NlmTestArgs, ctx: CallContext, async: boolean): void => {
      this.deliver<GrantedCallback>({ async, cookie: Buffer.from(a.cookie), exclusive: a.exclusive, lock: { ...a.lock, fh: Buffer.from(a.lock.fh), oh: Buffer.from(a.lock.oh) }, from: ctx.peer, transport: ctx.transport }, this.granted, this.waitingGranted, 'granted');
    };
    const answer = (cookie: Buffer): C.NlmRes => ({ cookie, stat: this.grantedReply === 'denied' ? NlmStat.denied : NlmStat.granted });
    const procs = new Map<number, Procedure<any, any>>();
    procs.set(NlmProc.NULL, { name: 'NULL', decodeArgs: () => undefined, encodeResult: () => undefined, handle: () => undefined });
    procs.set(NlmProc.GRANTED, {
      name: 'GRANTED',
      decodeArgs: (r) => C.decodeTestArgs(r, vers),
      encodeResult: (w, res: C.NlmRes) => C.encodeRes(w, res),
      handle: (a: C.NlmTestArgs, ctx) => {
        onGranted(a, ctx, false);
        return this.grantedReply === 'none' ? NO_REPLY : answer(a.cookie);
      },
    });
    procs.set(NlmProc.GRANTED_MSG, {
      name: 'GRANTED_MSG',
      decodeArgs: (r) => C.decodeTestArgs(r, vers),
      encodeResult: () => undefined,
      handle: (a: C.NlmTestArgs, ctx) => {
        onGranted(a, ctx, true);
        // GRANTED_RES goes to the server we lock with (Linux finds it through rpcbind: the same port).
        if (this.grantedReply !== 'none') this.sendRes(NlmProc.GRANTED_RES, answer(Buffer.from(a.cookie))).catch((err) => this.emit('error', err));
        return undefined;
      },
    });
    const resProc = (proc: number, decode: (r: XdrReader) => C.NlmRes | C.NlmTestRes): void => {
      procs.set(proc, {
        name: `RES_${proc}`,
        decodeArgs: decode,
        encodeResult: () => undefined,
        handle: (res: C.NlmTestRes, ctx) => {
          const { holder } = res;
          this.deliver<ResCallback>({ proc, cookie: Buffer.from(res.cookie), stat: res.stat, status: named(res.stat), ...(holder ? { holder } : {}), from: ctx.peer, transport: ctx.transport }, this.results, this.waitingRes, 'res');
        },
      });
    };
    resProc(NlmProc.TEST_RES, (r) => C.decodeTestRes(r, vers));
    for (const p of [NlmProc.LOCK_RES, NlmProc.CANCEL_RES, NlmProc.UNLOCK_RES, NlmProc.GRANTED_RES]) resProc(p, (r) => C.decodeRes(r, vers));
    const program: ProgramVersion = { prog: NLM_PROG, vers, procedures: procs };
    server.register(program);
    await server.addAddress(cb.address ?? this.opts.source ?? '127.0.0.1');
    this.callbackServer = server;
    if (cb.rpcbind) {
      this.registration = await registerWithRpcbind(
        (['udp', 'tcp'] as const).map((protocol) => ({ prog: NLM_PROG, vers, protocol, port: server.port })),
        // udp6/tcp6 too: a server finds an IPv6 client's callbacks with rpcbind v4 GETADDR of those.
        { mode: 'auto', ipv6: true },
      );
    }
  }

  async close(): Promise<void> {
    this.rpc.close();
    for (const w of this.waitingGranted) clearTimeout(w.timer);
    for (const w of this.waitingRes) clearTimeout(w.timer);
    await this.registration?.unregister();
    await this.callbackServer?.close();
  }
}

