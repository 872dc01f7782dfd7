// NSM's RPC side: SM_NOTIFY to many hosts from one server address, and the status callback to
// RPC monitors. As sm-notify does, each peer's statd is found through the peer's portmapper
// (GETPORT 100024 v1 udp on port 111), then told over UDP, from the server address itself.
//
// One notify run uses one UDP socket bound to the server address for every peer (as sm-notify
// does), not a connected socket per peer: 10k hosts cost two datagrams each, not two sockets.
// The node's own identity sends from the wildcard address (one socket per family), letting the
// kernel pick the source address each peer is routed from.
// Before the first datagram from an arriving address, its neighbours are told its new link-layer
// address (announce, see announce.ts): a peer answering an old MAC loses the first exchange.
// And the first exchange is retransmitted soon (firstRetransmitMs): if its answer was lost
// anyway, waiting the usual second costs every client of the moved address that second.
// One attempt per host at a time: an attempt holds a concurrency slot only while it runs, and a
// host that did not answer waits out its backoff outside the slots, so dead hosts never starve
// live ones. Hosts are retried until the overall time runs out.
import { callOnce, DatagramCaller, getPort, PMAP_PROG, portQuery } from '../rpc';
import { Backoff, familyOf, type AddressFamily } from '../net';
import type { Logger } from 'pino';
import { encodeSmStatus, encodeStatChge, NSM_PROGRAM, NSM_VERSION, SM_NOTIFY, type SmStatus } from './protocol';
import type { NotifyRequest, NsmSender } from './sender';
import type { MonitorCallback } from './store';

export interface RpcNsmSenderOptions {
  /** The peers' portmapper port. Default 111. */
  portmapperPort?: number;
  /** First wait before a host is tried again; doubles (jittered: hosts that failed together spread out) up to maxBackoffMs. Default 1 s. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Time each call of an attempt (GETPORT, then SM_NOTIFY) may take. Default 5 s. */
  attemptTimeoutMs?: number;
  /** UDP retransmission inside a call, doubling (jittered) up to 4× this. Default 1 s: shorter only floods a loaded peer. */
  retransmitMs?: number;
  /** The first retransmission of a host's first attempt (then doubling as above). Default 200 ms. */
  firstRetransmitMs?: number;
  /**
   * Tells the neighbours an arriving address's link-layer address (gratuitous ARP, unsolicited
   * neighbour advertisement) before its first notice. Never rejects; bounded by its own time.
   */
  announce?: (address: string) => Promise<void>;
  /** Status callback time, retransmissions included. Default 10 s. */
  callbackTimeoutMs?: number;
  /** Send from a port below 1024, as sm-notify does (some peers insist). Default: when running as root. */
  reservedPort?: boolean;
  log?: Logger;
}

interface HostState {
  address: string;
  backoff: Backoff;
  attempts: number;
}

export class RpcNsmSender implements NsmSender {
  constructor(private readonly opts: RpcNsmSenderOptions = {}) {}

  notifyHosts(req: NotifyRequest): Promise<void> {
    const deadline = Date.now() + req.timeoutMs;
    // Hosts of one wave that did not answer failed together: their first retry is jittered too.
    const backoff = { initialMs: this.opts.backoffMs ?? 1_000, maxMs: this.opts.maxBackoffMs ?? 60_000, jitterFirst: true };
    const ready: HostState[] = req.targets.map((t) => ({ address: t.address, backoff: new Backoff(backoff), attempts: 0 }));
    let left = ready.length;
    let active = 0;
    const timers = new Set<NodeJS.Timeout>();
    return this.open(req).then((callers) => new Promise<void>((resolve) => {
      let finished = false;
      const finish = (): void => {
        if (finished) return;
        finished = true;
        for (const t of timers) clearTimeout(t);
        for (const c of callers.values()) c.close();
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
          const caller = callers.get(familyOf(h.address));
          (caller ? this.attempt(req, caller, h, deadline) : Promise.resolve(false)).then((ok) => {
            active--;
            if (finished) return;
            if (ok) {
              req.onNotified(h.address);
              if (--left === 0) return finish();
            } else {
              const wait = Math.min(h.backoff.next(), Math.max(0, deadline - Date.now()));
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
    }), (err: Error) => {
      // Cannot even bind the server address (it left this node): nobody is reached.
      this.opts.log?.warn({ err, address: req.from }, 'nsm: cannot send from the server address');
    });
  }

  /**
   * The sockets of a run: one bound to the server address, after its neighbours were told it is
   * here; or for the node's identity one per family of the targets, on the wildcard address.
   */
  private async open(req: NotifyRequest): Promise<Map<AddressFamily, DatagramCaller>> {
    // Room for a burst of answers from many hosts at once (capped by net.core.rmem_max): a reply
    // dropped here costs that host a whole retransmission interval.
    const socket = { reserved: this.opts.reservedPort ?? process.getuid?.() === 0, recvBufferSize: 4 << 20 };
    const callers = new Map<AddressFamily, DatagramCaller>();
    if (req.from !== undefined) {
      if (req.targets.length > 0) await this.opts.announce?.(req.from);
      callers.set(familyOf(req.from), await DatagramCaller.open(req.from, socket));
      return callers;
    }
    try {
      for (const family of new Set(req.targets.map((t) => familyOf(t.address)))) {
        callers.set(family, await DatagramCaller.open(family === 4 ? '0.0.0.0' : '::', socket));
      }
    } catch (err) {
      for (const c of callers.values()) c.close();
      throw err;
    }
    return callers;
  }

  /** One GETPORT + SM_NOTIFY; true when the host answered. */
  private async attempt(req: NotifyRequest, caller: DatagramCaller, h: HostState, deadline: number): Promise<boolean> {
    const timeoutMs = Math.max(1, Math.min(this.opts.attemptTimeoutMs ?? 5_000, deadline - Date.now()));
    const retransmitMs = this.opts.retransmitMs ?? 1_000;
    const first = h.attempts++ === 0 ? Math.min(this.opts.firstRetransmitMs ?? 200, retransmitMs) : retransmitMs;
    const call = { timeoutMs, retransmit: { initialMs: first, maxMs: 4 * retransmitMs } };
    const { address } = h;
    try {
      const q = portQuery(address, NSM_PROGRAM, NSM_VERSION, 'udp');
      const port = await caller.call(address, this.opts.portmapperPort ?? 111, PMAP_PROG, q.vers, q.proc, q.encodeArgs, q.decodeResult, call);
      if (port === 0) {
        this.opts.log?.debug({ host: address }, 'nsm: peer has no statd registered');
        return false;
      }
      await caller.call(address, port, NSM_PROGRAM, NSM_VERSION, SM_NOTIFY, (w) => encodeStatChge(w, req.args), () => undefined, call);
      this.opts.log?.debug({ host: address, address: req.from, state: req.args.state }, 'nsm: SM_NOTIFY answered');
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
    await callOnce({ transport: 'udp', host: cb.callbackAddress, port, timeoutMs }, cb.myProg, cb.myVers, cb.myProc, (w) => encodeSmStatus(w, status), () => undefined);
  }
}
