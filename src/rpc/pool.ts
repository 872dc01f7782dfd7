// Calls to many peers, each through an RpcClient kept for reuse: one per (transport, peer, port,
// source address), at most `max` of them, the least recently used closed first. For a caller
// that answers whoever called it (callbacks from the address a request came in on) without
// holding a client per peer itself.
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
}

export class RpcClientPool {
  private readonly clients = new Map<string, RpcClient>();
  private readonly max: number;

  constructor(private readonly opts: RpcClientPoolOptions = {}) {
    this.max = opts.max ?? 256;
  }

  /** rpcbind GETPORT at the peer's portmapper (port 111), from the source address; 0 when not registered. */
  getPort(q: { address: string; source: string; transport: TransportKind; prog: number; vers: number; timeoutMs: number }): Promise<number> {
    return getPort(q.address, q.prog, q.vers, q.transport, { source: q.source, timeoutMs: q.timeoutMs });
  }

  /** One call; resolves with the encoded results of a SUCCESS reply, rejects as RpcClient.call does. */
  call(q: PooledCall): Promise<Buffer> {
    return this.client(q).call(q.prog, q.vers, q.proc, (w) => w.raw(q.args), (r) => Buffer.from(r.rest()), { timeoutMs: q.timeoutMs });
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  private client(q: PooledCall): RpcClient {
    const key = `${q.transport}|${q.address}|${q.port}|${q.source}`;
    let c = this.clients.get(key);
    if (c) {
      this.clients.delete(key); // re-inserted below: Map order is the LRU order
    } else {
      c = new RpcClient({ transport: q.transport, host: q.address, port: q.port, source: q.source, ...(this.opts.cred ? { cred: this.opts.cred } : {}) });
      if (this.clients.size >= this.max) {
        const [oldest, old] = this.clients.entries().next().value as [string, RpcClient];
        this.clients.delete(oldest);
        old.close();
      }
    }
    this.clients.set(key, c);
    return c;
  }
}
