// Calls to many peers, each through an RpcClient kept for reuse: one per (transport, peer, port,
// source address), at most `max` of them, the least recently used closed first. For a caller
// that answers whoever called it (callbacks from the address a request came in on) without
// holding a client per peer itself. A client idle for `idleMs` is closed (its TCP connection
// with it), and closeFrom(address) closes every client sending from an address that left this
// node: a connection bound to it would otherwise stay established, an fd held for nothing.
import { normaliseAddress } from '../net';
import { RpcClient } from './client';
import { getPort } from './rpcbind';
import type { Credential, TransportKind } from './types';

export interface PooledCall {
  address: string;
  port: number;
  /** The local address the call leaves from. */
  source: string;
  transport: TransportKind;
  prog: number;
  vers: number;
  proc: number;
  /** The encoded arguments. */
  args: Buffer;
  timeoutMs: number;
}

export interface RpcClientPoolOptions {
  /** Sent with every call. Default AUTH_NONE. */
  cred?: Credential;
  /** Clients kept open. Default 256. */
  max?: number;
  /** A client with no call for this long is closed. Default 60 s. */
  idleMs?: number;
}

interface Pooled {
  client: RpcClient;
  source: string;
  /** Calls not settled yet: a client is idle only without one. */
  calls: number;
  lastUsed: number;
}

export class RpcClientPool {
  private readonly clients = new Map<string, Pooled>();
  private readonly max: number;
  private readonly idleMs: number;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly opts: RpcClientPoolOptions = {}) {
    this.max = opts.max ?? 256;
    this.idleMs = opts.idleMs ?? 60_000;
  }

  /** rpcbind GETPORT at the peer's portmapper (port 111), from the source address; 0 when not registered. */
  getPort(q: { address: string; source: string; transport: TransportKind; prog: number; vers: number; timeoutMs: number }): Promise<number> {
    return getPort(q.address, q.prog, q.vers, q.transport, { source: q.source, timeoutMs: q.timeoutMs });
  }

  /** One call; resolves with the encoded results of a SUCCESS reply, rejects as RpcClient.call does. */
  call(q: PooledCall): Promise<Buffer> {
    const p = this.client(q);
    p.calls++;
    const settled = (): void => {
      p.calls--;
      p.lastUsed = Date.now();
    };
    const answered = p.client.call(q.prog, q.vers, q.proc, (w) => w.raw(q.args), (r) => Buffer.from(r.rest()), { timeoutMs: q.timeoutMs });
    answered.then(settled, settled);
    return answered;
  }

  /** Closes every client that sends from `source` (an address that left this node); their calls fail. */
  closeFrom(source: string): number {
    const from = normaliseAddress(source);
    let n = 0;
    for (const [key, p] of this.clients) {
      if (p.source !== from) continue;
      this.clients.delete(key);
      p.client.close();
      n++;
    }
    return n;
  }

  /** Clients open now. */
  get size(): number {
    return this.clients.size;
  }

  close(): void {
    for (const p of this.clients.values()) p.client.close();
    this.clients.clear();
    this.stopSweeper();
  }

  private client(q: PooledCall): Pooled {
    const source = normaliseAddress(q.source);
    const key = `${q.transport}|${q.address}|${q.port}|${source}`;
    let p = this.clients.get(key);
    if (p) {
      this.clients.delete(key); // re-inserted below: Map order is the LRU order
    } else {
      p = { client: new RpcClient({ transport: q.transport, host: q.address, port: q.port, source, ...(this.opts.cred ? { cred: this.opts.cred } : {}) }), source, calls: 0, lastUsed: Date.now() };
      if (this.clients.size >= this.max) {
        const [oldest, old] = this.clients.entries().next().value as [string, Pooled];
        this.clients.delete(oldest);
        old.client.close();
      }
    }
    this.clients.set(key, p);
    this.sweeper ??= setInterval(() => this.sweep(), Math.max(1, this.idleMs / 2)).unref();
    return p;
  }

  /** Closes the clients idle for idleMs (no call pending, none started since). */
  private sweep(): void {
    const before = Date.now() - this.idleMs;
    for (const [key, p] of this.clients) {
      if (p.calls !== 0 || p.lastUsed > before) continue;
      this.clients.delete(key);
      p.client.close();
    }
    if (this.clients.size === 0) this.stopSweeper();
  }

  private stopSweeper(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
  }
}
