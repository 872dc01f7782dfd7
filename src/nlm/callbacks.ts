// Calls from the lock manager back to a client's lock manager: the *_RES answers to *_MSG calls
// and the GRANTED callbacks of blocked locks. The client's NLM port is found through its
// rpcbind (GETPORT, cached briefly) and every callback leaves from the server address the
// request came in on, as Linux does (nlmsvc_lookup_host: same protocol, version, and
// srcaddr = the request's destination address).
import type { Logger } from 'pino';
import { AUTH_SYS, type Credential, type TransportKind } from '../rpc';
import { Backoff } from '../net';
import { XdrReader, XdrWriter } from '../xdr';
import type { BlockGranted, HeldLock, LockOwner, LockStatus } from '../locks/types';
import { encodeTestArgs, decodeRes, type NlmLock } from './codec';
import { NLM_PROG, NlmProc, statName } from './protocol';

/** The RPC calls callbacks need: src/rpc's RpcClientPool, or a test's stand-in. */
export interface NlmRpcCaller {
  /** rpcbind GETPORT on the target's portmapper (port 111); 0 when not registered. */
  getPort(q: { address: string; source: string; transport: TransportKind; prog: number; vers: number; timeoutMs: number }): Promise<number>;
  /** One call; resolves with the encoded results of a SUCCESS reply, rejects otherwise. */
  call(q: { address: string; port: number; source: string; transport: TransportKind; prog: number; vers: number; proc: number; args: Buffer; timeoutMs: number }): Promise<Buffer>;
}

/** The credential of every callback: AUTH_SYS as root from the server's name, as Linux's lockd sends. */
export const callbackCredential = (machineName: string): Credential => ({ flavor: AUTH_SYS, stamp: 0, machineName, uid: 0, gid: 0, gids: [] });

/** Where and how to reach a client's lock manager. */
export interface CallbackTarget {
  address: string;
  /** The server address the request came in on: the callback's source. */
  source: string;
  transport: TransportKind;
  vers: number;
}

export interface CallbackOptions {
  portCacheMs: number;
  callTimeoutMs: number;
  now: () => number;
}

export class LockManagerCaller {
  private readonly ports = new Map<string, { port: number; until: number }>();

  constructor(private readonly rpc: NlmRpcCaller, private readonly opts: CallbackOptions) {}

  private async port(t: CallbackTarget): Promise<number> {
    const key = `${t.address}|${t.transport}|${t.vers}|${t.source}`;
    const hit = this.ports.get(key);
    if (hit && hit.until > this.opts.now()) return hit.port;
    const port = await this.rpc.getPort({ address: t.address, source: t.source, transport: t.transport, prog: NLM_PROG, vers: t.vers, timeoutMs: this.opts.callTimeoutMs });
    if (port === 0) throw new Error(`no NLM v${t.vers}/${t.transport} registered at ${t.address}`);
    this.ports.set(key, { port, until: this.opts.now() + this.opts.portCacheMs });
    return port;
  }

  async call(t: CallbackTarget, proc: number, args: Buffer, timeoutMs = this.opts.callTimeoutMs): Promise<Buffer> {
    const port = await this.port(t);
    try {
      return await this.rpc.call({ address: t.address, port, source: t.source, transport: t.transport, prog: NLM_PROG, vers: t.vers, proc, args, timeoutMs });
    } catch (err) {
      // The client's lock manager may have restarted on another port.
      this.ports.delete(`${t.address}|${t.transport}|${t.vers}|${t.source}`);
      throw err;
    }
  }
}

/** What the NLM layer keeps with a queued block, handed back by the table when it is granted. */
export interface Waiter {
  target: CallbackTarget;
  cookie: Buffer;
  exclusive: boolean;
  /** The request as the client sent it (its wire range is what the client matches GRANTED on). */
  lock: NlmLock;
  /** The original request was LOCK_MSG: answer with GRANTED_MSG and wait for GRANTED_RES. */
  async: boolean;
}

export interface GrantOptions {
  /** Give up (and release the lock) when the client has not acknowledged within this time. */
  timeoutMs: number;
  retryInitialMs: number;
  retryMaxMs: number;
  /** caller_name of GRANTED's lock: the server's name, as Linux sends its nodename. */
  serverName: string;
}

/** Does the held lock belong to this owner on this file and meet [offset, offset+length)? Length 0: to EOF. */
export function ownerRangeMeets(l: HeldLock, q: { fh: Buffer; owner: LockOwner; offset: bigint; length: bigint }): boolean {
  if (l.owner.host !== q.owner.host || l.owner.svid !== q.owner.svid || !l.owner.oh.equals(q.owner.oh) || !l.fh.equals(q.fh)) return false;
  return (q.length === 0n || l.offset < q.offset + q.length) && (l.length === 0n || q.offset < l.offset + l.length);
}

interface PendingGrant {
  waiter: Waiter;
  lock: HeldLock;
  grant: BlockGranted;
  deadline: number;
  /** The current attempt's wait (its call timeout, then the pause after it); `backoff` gives the next. */
  delay: number;
  backoff: Backoff;
  timer?: NodeJS.Timeout;
}

/**
 * GRANTED callbacks with retry and backoff. A grant the client never acknowledges, or answers
 * with anything but granted (denied_grace_period means "try again"), is undone so that others
 * are not blocked forever behind a client that went away.
 *
 * Only a grant still unconfirmed may be undone. Once the client holds the lock by another path
 * (a LOCK answered granted, an UNLOCK, FREE_ALL, its reboot) the service forgets the pending
 * grant: a later `denied` or the give-up timer would otherwise release what the client now holds
 * (Linux: nlmsvc_lock / nlmsvc_unlock / nlmsvc_traverse_blocks unlink the block, and a
 * GRANTED_RES that then finds no block does nothing).
 */
export class GrantCallbacks {
  private readonly pending = new Map<string, PendingGrant>();
  /** (client address, cookie) → keys of its pending grants, oldest first: GRANTED_RES names only the cookie. */
  private readonly byCookie = new Map<string, string[]>();
  /** Owner host → keys of its pending grants: confirmations look at one host's, not at all. */
  private readonly byHost = new Map<string, Set<string>>();
  private seq = 0;
  private closed = false;

  constructor(
    private readonly caller: LockManagerCaller,
    /** Takes back an unconfirmed grant (the one seam between callbacks and the lock table). */
    private readonly undo: (grant: BlockGranted) => void,
    private readonly opts: GrantOptions,
    private readonly log: Logger | undefined,
    private readonly now: () => number,
  ) {}

  get size(): number { return this.pending.size; }

  private static cookieKey(address: string, cookie: Buffer): string {
    return `${address}|${cookie.toString('hex')}`;
  }

  start(g: BlockGranted): void {
    const waiter = g.waiter as Waiter | undefined;
    if (!waiter || this.closed) return;
    const ck = GrantCallbacks.cookieKey(waiter.target.address, waiter.cookie);
    const key = `${ck}#${++this.seq}`;
    const keys = this.byCookie.get(ck);
    if (keys) keys.push(key);
    else this.byCookie.set(ck, [key]);
    const backoff = new Backoff({ initialMs: this.opts.retryInitialMs, maxMs: this.opts.retryMaxMs });
    // Matched against the client's own requests: the handle it sent, not the table's name of the file.
    const lock = g.lock.fh.equals(waiter.lock.fh) ? g.lock : { ...g.lock, fh: waiter.lock.fh };
    const p: PendingGrant = { waiter, lock, grant: g, deadline: this.now() + this.opts.timeoutMs, delay: backoff.next(), backoff };
    this.pending.set(key, p);
    const host = g.lock.owner.host;
    const ofHost = this.byHost.get(host);
    if (ofHost) ofHost.add(key);
    else this.byHost.set(host, new Set([key]));
    this.attempt(key, p);
  }

  private args(p: PendingGrant): Buffer {
    const w = new XdrWriter(128);
    const { waiter } = p;
    encodeTestArgs(w, waiter.target.vers, { cookie: waiter.cookie, exclusive: waiter.exclusive, lock: { ...waiter.lock, callerName: this.opts.serverName } });
    return w.toBuffer();
  }

  private attempt(key: string, p: PendingGrant): void {
    if (this.pending.get(key) !== p) return;
    const remaining = p.deadline - this.now();
    if (remaining <= 0) return this.giveUp(key, p, 'not acknowledged');
    const timeout = Math.max(1, Math.min(p.delay, remaining));
    const { waiter } = p;
    if (waiter.async) {
      // GRANTED_MSG: the answer comes as a GRANTED_RES call (see acknowledge).
      this.caller.call(waiter.target, NlmProc.GRANTED_MSG, this.args(p), timeout).catch((err) => this.log?.debug({ err: String(err), key }, 'GRANTED_MSG not delivered'));
      this.schedule(key, p);
      return;
    }
    this.caller.call(waiter.target, NlmProc.GRANTED, this.args(p), timeout).then(
      (results) => {
        if (this.pending.get(key) !== p) return;
        let stat: LockStatus | undefined;
        try {
          stat = statName(decodeRes(new XdrReader(results), waiter.target.vers).stat);
        } catch {
          stat = undefined;
        }
        this.answer(key, p, stat);
      },
      (err) => {
        if (this.pending.get(key) !== p) return;
        this.log?.debug({ err: String(err), key }, 'GRANTED not answered');
        this.schedule(key, p);
      },
    );
  }

  /** The next attempt after the current backoff (doubling, jittered, capped), or at the deadline. */
  private schedule(key: string, p: PendingGrant): void {
    const wait = Math.max(0, Math.min(p.delay, p.deadline - this.now()));
    p.delay = p.backoff.next();
    p.timer = setTimeout(() => this.attempt(key, p), wait);
    p.timer.unref();
  }

  private answer(key: string, p: PendingGrant, stat: LockStatus | undefined): void {
    if (stat === 'granted') {
      this.finish(key, p);
    } else if (stat === 'denied_grace_period') {
      this.schedule(key, p);
    } else {
      this.giveUp(key, p, `answered ${stat ?? 'garbage'}`);
    }
  }

  /** A GRANTED_RES from the client's lock manager. */
  acknowledge(address: string, cookie: Buffer, stat: number): boolean {
    const key = this.byCookie.get(GrantCallbacks.cookieKey(address, cookie))?.[0];
    const p = key === undefined ? undefined : this.pending.get(key);
    if (!key || !p) return false;
    if (p.timer) clearTimeout(p.timer);
    this.answer(key, p, statName(stat));
    return true;
  }

  /** This host's pending grants that match (a copy: the caller may finish them). */
  private ofHost(host: string, match: (lock: HeldLock) => boolean): [string, PendingGrant][] {
    const out: [string, PendingGrant][] = [];
    for (const key of this.byHost.get(host) ?? []) {
      const p = this.pending.get(key)!;
      if (match(p.lock)) out.push([key, p]);
    }
    return out;
  }

  /** Stops the host's first pending grant that matches (the client cancelled) and hands it back to be undone. */
  withdraw(host: string, match: (lock: HeldLock) => boolean): BlockGranted | undefined {
    const [hit] = this.ofHost(host, match);
    if (!hit) return undefined;
    this.finish(...hit);
    return hit[1].grant;
  }

  /**
   * Forgets the host's pending grants that match, without undoing them: the client confirmed
   * the lock by another path, or its locks were dropped already.
   */
  forgetOfHost(host: string, match: (lock: HeldLock) => boolean = () => true): number {
    const hits = this.ofHost(host, match);
    for (const [key, p] of hits) this.finish(key, p);
    return hits.length;
  }

  /** forgetOfHost over every host (an address went away: rare, and it walks all). */
  forget(match: (lock: HeldLock) => boolean): number {
    let n = 0;
    for (const [key, p] of this.pending) {
      if (!match(p.lock)) continue;
      this.finish(key, p);
      n++;
    }
    return n;
  }

  private finish(key: string, p: PendingGrant): void {
    if (p.timer) clearTimeout(p.timer);
    this.pending.delete(key);
    const ck = GrantCallbacks.cookieKey(p.waiter.target.address, p.waiter.cookie);
    const keys = this.byCookie.get(ck);
    const i = keys?.indexOf(key) ?? -1;
    if (i >= 0) keys!.splice(i, 1);
    if (keys?.length === 0) this.byCookie.delete(ck);
    const host = p.lock.owner.host;
    const ofHost = this.byHost.get(host);
    ofHost?.delete(key);
    if (ofHost?.size === 0) this.byHost.delete(host);
  }

  private giveUp(key: string, p: PendingGrant, why: string): void {
    this.finish(key, p);
    const l = p.lock;
    this.log?.warn({ client: l.owner.host, serverAddress: l.serverAddress, svid: l.owner.svid, why }, 'GRANTED callback failed: undoing the grant');
    this.undo(p.grant);
  }

  close(): void {
    this.closed = true;
    for (const p of this.pending.values()) if (p.timer) clearTimeout(p.timer);
    this.pending.clear();
    this.byCookie.clear();
    this.byHost.clear();
  }
}
