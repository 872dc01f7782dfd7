// NSM's RPC side: SM_NOTIFY to many hosts from one server address, and the status callback to
// RPC monitors. As sm-notify does, each peer's statd is found through the peer's portmapper
// (GETPORT 100024 v1 udp on port 111), then told over UDP, from the server address itself.
//
// One attempt per host at a time: an attempt holds a concurrency slot only while it runs, and a
// host that did not answer waits out its backoff outside the slots, so dead hosts never starve
// live ones. Hosts are retried until the overall time runs out.
import { getPort, RpcClient, type RpcClientOptions } from '../rpc';
import type { Logger } from 'pino';
import { encodeSmStatus, encodeStatChge, NSM_PROGRAM, NSM_VERSION, SM_NOTIFY } from './protocol';
import type { NotifyRequest, NsmSender } from './monitor';
import type { MonitorCallback } from './store';
import type { SmStatus } from './protocol';

export interface RpcNsmSenderOptions {
  /** The peers' portmapper port. Default 111. */
  portmapperPort?: number;
  /** First wait before a host is tried again; doubles up to maxBackoffMs. Default 1 s. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Time one attempt (GETPORT, then SM_NOTIFY) may take. Default 2 s. */
  attemptTimeoutMs?: number;
  /** UDP retransmission inside an attempt. Default 250 ms. */
  retransmitMs?: number;
  /** Status callback time, retransmissions included. Default 10 s. */
  callbackTimeoutMs?: number;
  log?: Logger;
}

interface HostState {
  address: string;
  backoff: number;
}

export class RpcNsmSender implements NsmSender {
  constructor(private readonly opts: RpcNsmSenderOptions = {}) {}

  notifyHosts(req: NotifyRequest): Promise<void> {
    const deadline = Date.now() + req.timeoutMs;
    const ready: HostState[] = req.targets.map((t) => ({ address: t.address, backoff: this.opts.backoffMs ?? 1_000 }));
    let left = ready.length;
    let active = 0;
    const timers = new Set<NodeJS.Timeout>();
    const clients = new Set<RpcClient>();
    return new Promise<void>((resolve) => {
      let finished = false;
      const finish = (): void => {
        if (finished) return;
        finished = true;
        for (const t of timers) clearTimeout(t);
        for (const c of clients) c.close();
        clearTimeout(overall);
        req.signal.removeEventListener('abort', finish);
        resolve();
      };
      const overall = setTimeout(finish, Math.max(0, req.timeoutMs));
      req.signal.addEventListener('abort', finish);
      if (req.signal.aborted || left === 0) return finish();
      const pump = (): void => {
        while (!finished && active < req.concurrency && ready.length > 0) {
          const h = ready.shift()!;
          active++;
          this.attempt(req, h.address, deadline, clients).then((ok) => {
            active--;
            if (finished) return;
            if (ok) {
              req.onNotified(h.address);
              if (--left === 0) return finish();
            } else {
              const wait = Math.min(h.backoff, Math.max(0, deadline - Date.now()));
              h.backoff = Math.min(h.backoff * 2, this.opts.maxBackoffMs ?? 60_000);
              const t = setTimeout(() => {
                timers.delete(t);
                ready.push(h);
                pump();
              }, wait);
              timers.add(t);
            }
            pump();
          });
        }
      };
      pump();
    });
  }

  /** One GETPORT + SM_NOTIFY; true when the host answered. */
  private async attempt(req: NotifyRequest, address: string, deadline: number, clients: Set<RpcClient>): Promise<boolean> {
    const timeoutMs = Math.max(1, Math.min(this.opts.attemptTimeoutMs ?? 2_000, deadline - Date.now()));
    try {
      const port = await getPort(address, NSM_PROGRAM, NSM_VERSION, 'udp', { source: req.from, port: this.opts.portmapperPort ?? 111, timeoutMs });
      if (port === 0) {
        this.opts.log?.debug({ host: address }, 'nsm: peer has no statd registered');
        return false;
      }
      const client = new RpcClient(this.udpTo(address, port, req.from, timeoutMs));
      clients.add(client);
      try {
        await client.call(NSM_PROGRAM, NSM_VERSION, SM_NOTIFY, (w) => encodeStatChge(w, req.args));
      } finally {
        clients.delete(client);
        client.close();
      }
      return true;
    } catch (err) {
      this.opts.log?.debug({ host: address, err: (err as Error).message }, 'nsm: SM_NOTIFY attempt failed');
      return false;
    }
  }

  async statusCallback(cb: MonitorCallback, status: SmStatus): Promise<void> {
    const timeoutMs = this.opts.callbackTimeoutMs ?? 10_000;
    const port = await getPort(cb.callbackAddress, cb.myProg, cb.myVers, 'udp', { port: this.opts.portmapperPort ?? 111, timeoutMs });
    if (port === 0) throw new Error(`program ${cb.myProg} version ${cb.myVers} not registered at ${cb.callbackAddress}`);
    const client = new RpcClient(this.udpTo(cb.callbackAddress, port, undefined, timeoutMs));
    try {
      await client.call(cb.myProg, cb.myVers, cb.myProc, (w) => encodeSmStatus(w, status));
    } finally {
      client.close();
    }
  }

  private udpTo(host: string, port: number, source: string | undefined, timeoutMs: number): RpcClientOptions {
    return {
      transport: 'udp',
      host,
      port,
      ...(source !== undefined ? { source } : {}),
      timeoutMs,
      retransmitMs: this.opts.retransmitMs ?? 250,
      maxRetransmitMs: 1_000,
    };
  }
}
