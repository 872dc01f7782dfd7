// The ONC RPC server's listeners, feeding its dispatcher (dispatcher.ts: registry, auth, the
// duplicate-request cache, handlers). One UDP socket and one TCP listener per local address
// (Node cannot read a datagram's destination address, and every call must know the server
// address it came in on), all on the one port chosen by listen(). Addresses come and go with
// addAddress/removeAddress. Here: the sockets of each address and its datagrams; the TCP
// connections are connections.ts', each address's fair share of the event loop lanes.ts'.
import dgram from 'node:dgram';
import net from 'node:net';
import type { Logger } from 'pino';
import { normaliseAddress } from '../net';
import { TcpConnections, type ConnectionEvent } from './connections';
import { guardedObserver, RpcDispatcher, type CallMeta, type RpcDispatchEvent } from './dispatcher';
import { Lanes, type Lane } from './lanes';
import { newCredentialCache, type CredentialCache } from './message';
import type { Endpoint, ProgramVersion } from './types';

/**
 * Replies go only to addresses a datagram came from, always literals: skip dns.lookup, which
 * validates, tests the address with a regular expression and defers every send by a tick.
 */
const literalLookup = ((address: string, family: number, callback: (err: null, address: string, family: number) => void): void =>
  callback(null, address, family)) as unknown as dgram.SocketOptions['lookup'];

export interface RpcServerOptions {
  /** Largest TCP record accepted; a bigger one closes the connection. Default 1 MiB. */
  maxRecordSize?: number;
  /** A TCP connection with no traffic and no call in progress for this long is closed. Default 6 min. */
  idleTimeoutMs?: number;
  /** A TCP connection that started a record and has not finished it this long after is closed. Default 10 s. */
  halfRecordTimeoutMs?: number;
  /**
   * Connections over all addresses. At the cap a new connection closes the least recently active
   * idle one (Linux svc_check_conn_limits: "always select the oldest connection"), or is refused
   * when every connection has a call in progress. Default 1024.
   */
  maxConnections?: number;
  /** Connections from one peer address; at the cap the same rule applies among that peer's. Default 64. */
  maxConnectionsPerPeer?: number;
  /** Calls handled at once per TCP connection; beyond it the connection is not read. Default 64. */
  maxCallsPerConnection?: number;
  /**
   * Calls a TCP connection starts in one turn of the event loop; the rest of what it sent waits for
   * the next turn, so that one client's burst (a reclaim after a failover) does not queue every
   * other connection's calls behind it. Default 32.
   */
  callsPerTurn?: number;
  /**
   * Calls of one local address run as they are read in one turn of the event loop; the rest wait
   * in the address's lane, and the lanes are served round-robin after the reads. Libuv hands over
   * the readable sockets in its own order: without this a client of one address waits behind a
   * call from every connection of another (1,000 hosts reclaiming on an address that just
   * arrived). Default 8.
   */
  addressCallsPerTurn?: number;
  /**
   * How long the lanes are served in one turn before the loop reads its sockets again: a call
   * that arrives meanwhile waits about this long at most. Default 0.25 ms.
   */
  laneSliceMs?: number;
  /** SO_RCVBUF of the UDP sockets (the kernel caps it at net.core.rmem_max): many clients with a call each overflow the default. Default 4 MiB. */
  udpReceiveBufferSize?: number;
  /** UDP calls handled at once (all addresses); datagrams beyond are dropped, clients retransmit. Default 1024. */
  maxUdpCallsInProgress?: number;
  /** UDP duplicate-request cache entries (of the dispatcher the server makes). Default 1024. */
  duplicateCacheSize?: number;
  /** Cheap, synchronous observer for metrics and logs; must not throw. */
  onEvent?: (e: RpcServerEvent) => void;
  /** Warnings an operator must see (a connection limit reached), at most one line per 10 s per limit. */
  log?: Logger;
}

/** The dispatcher's events (calls, drops, duplicates, errors) and the connections' own. */
export type RpcServerEvent = RpcDispatchEvent | ConnectionEvent;

interface Listener {
  address: string;
  udp: dgram.Socket;
  tcp: net.Server;
  lane: Lane;
}

/** UDP peers (address and port) whose last credential is kept, per address; past it the cache starts again. */
const UDP_CREDENTIAL_PEERS = 4096;

export class RpcServer {
  /** What the listeners feed: the registry and the protocol, no sockets. */
  readonly dispatcher: RpcDispatcher;
  private readonly listeners = new Map<string, Listener>();
  private readonly lanes: Lanes;
  private readonly connections: TcpConnections;
  private readonly udpReceiveBufferSize: number;
  private readonly maxUdpCallsInProgress: number;
  private readonly emit: (e: RpcServerEvent) => void;
  private chosenPort = 0;
  /** addAddress/removeAddress/close run one at a time: the first bind fixes an ephemeral port for the rest. */
  private ops: Promise<unknown> = Promise.resolve();
  private closed = false;
  private udpInProgress = 0;

  constructor(options: RpcServerOptions = {}) {
    this.emit = guardedObserver(options.onEvent);
    this.udpReceiveBufferSize = options.udpReceiveBufferSize ?? 4 << 20;
    this.maxUdpCallsInProgress = options.maxUdpCallsInProgress ?? 1024;
    this.lanes = new Lanes(options.addressCallsPerTurn ?? 8, options.laneSliceMs ?? 0.25);
    this.connections = new TcpConnections({
      maxRecordSize: options.maxRecordSize ?? 1 << 20,
      idleTimeoutMs: options.idleTimeoutMs ?? 6 * 60_000,
      halfRecordTimeoutMs: options.halfRecordTimeoutMs ?? 10_000,
      maxConnections: options.maxConnections ?? 1024,
      maxConnectionsPerPeer: options.maxConnectionsPerPeer ?? 64,
      maxCallsPerConnection: options.maxCallsPerConnection ?? 64,
      callsPerTurn: Math.max(1, options.callsPerTurn ?? 32), // 0 would never start a call
    }, this.lanes, (msg, meta, where, start, end) => this.handleSafely(msg, meta, where, start, end), this.emit, options.log);
    this.dispatcher = new RpcDispatcher({ ...(options.duplicateCacheSize !== undefined ? { duplicateCacheSize: options.duplicateCacheSize } : {}), ...(options.onEvent ? { onEvent: options.onEvent } : {}) });
  }

  register(p: ProgramVersion): void {
    this.dispatcher.register(p);
  }

  unregister(prog: number, vers: number): void {
    this.dispatcher.unregister(prog, vers);
  }

  /** Chooses the port every address listens on (0: the first bind picks one). Before the first addAddress. */
  listen(opts: { port: number }): void {
    if (this.listeners.size > 0 || this.chosenPort !== 0) throw new Error('listen() must come before the first addAddress()');
    this.chosenPort = opts.port;
  }

  /** The port all addresses listen on (0 until the first address is bound with an ephemeral port). */
  get port(): number {
    return this.chosenPort;
  }

  addresses(): string[] {
    return [...this.listeners.keys()];
  }

  /** Opens a UDP socket and a TCP listener on (address, port). Adding an address twice is a no-op. */
  addAddress(address: string): Promise<void> {
    return this.serialise(() => this.bind(normaliseAddress(address)));
  }

  /** Closes the address's UDP socket and TCP listener and every TCP connection made to it. */
  removeAddress(address: string): Promise<void> {
    return this.serialise(() => this.unbind(normaliseAddress(address)));
  }

  async close(): Promise<void> {
    await this.serialise(async () => {
      this.closed = true;
      for (const a of [...this.listeners.keys()]) await this.unbind(a);
      this.connections.closeAll();
    });
  }

  private serialise<T>(op: () => Promise<T>): Promise<T> {
    const run = this.ops.then(op, op);
    this.ops = run.catch(() => undefined);
    return run;
  }

  private async bind(address: string): Promise<void> {
    if (this.closed) throw new Error('server is closed');
    if (this.listeners.has(address)) return;
    // With an ephemeral port, the number UDP got may be taken for TCP: try a few.
    const attempts = this.chosenPort === 0 ? 8 : 1;
    for (let i = 1; ; i++) {
      const udp = dgram.createSocket({ type: net.isIPv6(address) ? 'udp6' : 'udp4', lookup: literalLookup, recvBufferSize: this.udpReceiveBufferSize });
      let tcp: net.Server | undefined;
      try {
        await new Promise<void>((resolve, reject) => {
          udp.once('error', reject);
          udp.bind({ address, port: this.chosenPort, exclusive: true }, () => {
            udp.off('error', reject);
            resolve();
          });
        });
        const port = udp.address().port;
        tcp = net.createServer({ noDelay: true });
        await new Promise<void>((resolve, reject) => {
          tcp!.once('error', reject);
          // An arriving address's clients all reconnect at once on SM_NOTIFY: Node's default backlog
          // (511) overflowed with 1,000 (bench/failover-scale.ts); the kernel caps it at somaxconn.
          tcp!.listen({ host: address, port, exclusive: true, ipv6Only: net.isIPv6(address), backlog: 4096 }, () => {
            tcp!.off('error', reject);
            resolve();
          });
        });
        this.chosenPort = port;
        const l: Listener = { address, udp, tcp, lane: this.lanes.open() };
        this.attach(l);
        this.listeners.set(address, l);
        return;
      } catch (err) {
        udp.close();
        tcp?.close();
        if (i >= attempts || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      }
    }
  }

  private async unbind(address: string): Promise<void> {
    const l = this.listeners.get(address);
    if (!l) return;
    this.listeners.delete(address);
    this.lanes.close(l.lane);
    // Its waiting datagrams are never served: out of the count of calls in progress.
    this.udpInProgress -= l.lane.datagrams;
    const tcpClosed = new Promise<void>((resolve) => l.tcp.close(() => resolve()));
    this.connections.closeTo(address);
    await Promise.all([tcpClosed, new Promise<void>((resolve) => l.udp.close(() => resolve()))]);
  }

  private attach(l: Listener): void {
    const local: Endpoint = { address: l.address, port: this.chosenPort };
    const v6 = net.isIPv6(l.address);
    const sendFailed = (err: Error | null): void => {
      if (err) this.emit({ kind: 'error', where: 'udp send', error: err });
    };
    // Per peer address and port, as a client's socket is: its last credential.
    const credentials = new Map<string, CredentialCache>();
    const credentialsOf = (peer: Endpoint): CredentialCache => {
      const key = `${peer.port} ${peer.address}`;
      let cache = credentials.get(key);
      if (!cache) {
        if (credentials.size >= UDP_CREDENTIAL_PEERS) credentials.clear();
        credentials.set(key, (cache = newCredentialCache()));
      }
      return cache;
    };
    l.udp.on('message', (msg, rinfo) => {
      // Only an IPv6 socket can report an IPv4-mapped peer.
      const peer = { address: v6 ? normaliseAddress(rinfo.address) : rinfo.address, port: rinfo.port };
      if (this.udpInProgress >= this.maxUdpCallsInProgress) {
        this.emit({ kind: 'drop', transport: 'udp', local, peer, reason: 'too many calls in progress' });
        return;
      }
      const meta: CallMeta = { transport: 'udp', local, peer, credentials: credentialsOf(peer) };
      const { lane } = l;
      if (lane.waiting.length === 0 && this.lanes.runNow(lane)) return void this.callUdp(l, msg, rinfo, meta, sendFailed);
      // Datagrams read after the address's removal (in the same read) wait for nothing.
      if (this.listeners.get(l.address) !== l) return;
      this.udpInProgress++;
      lane.datagrams++;
      lane.waiting.push(() => {
        this.udpInProgress--;
        lane.datagrams--;
        this.callUdp(l, msg, rinfo, meta, sendFailed);
      });
      this.lanes.schedule();
    });
    l.udp.on('error', (error) => this.emit({ kind: 'error', where: `udp ${l.address}`, error }));
    l.tcp.on('error', (error) => this.emit({ kind: 'error', where: `tcp ${l.address}`, error }));
    l.tcp.on('connection', (socket) => this.connections.accept(socket, local, l.lane));
  }

  private callUdp(l: Listener, msg: Buffer, rinfo: dgram.RemoteInfo, meta: CallMeta, sendFailed: (err: Error | null) => void): void {
    const reply = this.handleSafely(msg, meta, 'udp dispatch');
    if (reply instanceof Promise) {
      this.udpInProgress++;
      reply.finally(() => this.udpInProgress--).then(
        (r) => r && this.sendUdp(l, r, rinfo, sendFailed),
        (error) => this.emit({ kind: 'error', where: 'udp dispatch', error }),
      );
    } else if (reply) {
      this.sendUdp(l, reply, rinfo, sendFailed);
    }
  }

  private sendUdp(l: Listener, reply: Buffer, to: dgram.RemoteInfo, sendFailed: (err: Error | null) => void): void {
    // The address may have been removed while the call ran: its reply has nowhere to go.
    if (this.listeners.get(l.address) !== l) return;
    try {
      l.udp.send(reply, to.port, to.address, sendFailed);
    } catch (err) {
      sendFailed(err as Error);
    }
  }

  /** The dispatcher's handle(), with a failure the peer could not cause reported instead of thrown into the socket's callback. */
  private handleSafely(msg: Buffer, meta: CallMeta, where: string, start = 0, end = msg.length): Buffer | undefined | Promise<Buffer | undefined> {
    try {
      return this.dispatcher.handle(msg, meta, start, end);
    } catch (error) {
      this.emit({ kind: 'error', where, error });
      return undefined;
    }
  }
}
