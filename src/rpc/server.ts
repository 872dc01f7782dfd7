// The ONC RPC server's listeners, feeding its dispatcher (dispatcher.ts: registry, auth, the
// duplicate-request cache, handlers). One UDP socket and one TCP listener per local address
// (Node cannot read a datagram's destination address, and every call must know the server
// address it came in on), all on the one port chosen by listen(). Addresses come and go with
// addAddress/removeAddress. Here: the connections, their limits (in all and per peer),
// backpressure, and each address's fair share of the one event loop (its lane).
import dgram from 'node:dgram';
import net from 'node:net';
import type { Logger } from 'pino';
import { normaliseAddress } from '../net';
import { guardedObserver, RpcDispatcher, type CallMeta, type RpcDispatchEvent } from './dispatcher';
import { newCredentialCache, type CredentialCache } from './message';
import { RecordDecoder } from './record';
import type { Endpoint, ProgramVersion } from './types';

/**
 * Replies go only to addresses a datagram came from, always literals: skip dns.lookup, which
 * validates, tests the address with a regular expression and defers every send by a tick.
 */
const literalLookup = ((address: string, family: number, callback: (err: null, address: string, family: number) => void): void =>
  callback(null, address, family)) as unknown as dgram.SocketOptions['lookup'];

/** Writes replies (records, their marks in front) in one write, and one syscall: one as it is, more joined. */
function writeRecords(socket: net.Socket, replies: Buffer[]): void {
  socket.write(replies.length === 1 ? replies[0]! : Buffer.concat(replies));
}

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

/** The dispatcher's events (calls, drops, duplicates, errors) and the listeners' own. */
export type RpcServerEvent =
  | RpcDispatchEvent
  | { kind: 'connection'; state: 'open' | 'closed' | 'refused'; local: Endpoint; peer: Endpoint; reason?: string }
  /**
   * A new connection met a limit: the least recently active idle connection (of all, or of that
   * peer) was closed to make room, or the new one was refused because none was idle.
   */
  | { kind: 'limit'; scope: 'server' | 'peer'; action: 'closed-idle' | 'refused'; limit: number; local: Endpoint; peer: Endpoint; closed?: Endpoint };

interface Listener {
  address: string;
  udp: dgram.Socket;
  tcp: net.Server;
  lane: Lane;
}

/** A local address's share of the event loop. */
interface Lane {
  /** Calls run as they were read since the lanes were last served. */
  ran: number;
  /** Work waiting its round, oldest first: a connection's next calls, or a datagram's call. */
  waiting: (() => void)[];
  /** Datagrams among `waiting` (they count as UDP calls in progress). */
  datagrams: number;
}

interface Connection {
  socket: net.Socket;
  meta: CallMeta;
  /** Its local address's. */
  lane: Lane;
  decoder: RecordDecoder;
  /** Calls in arrival order; replies leave in that order. */
  queue: { done: boolean; reply: Buffer | undefined }[];
  /** Whole records read but not yet started (beyond maxCallsPerConnection or callsPerTurn). */
  backlog: Buffer[];
  /** Calls started by the data event in progress (callsPerTurn bounds it). */
  turn: number;
  /** Replies answered synchronously in this turn, written together at its end. */
  ready: Buffer[];
  /** Waits in its lane for a round, to start calls from its backlog. */
  again: boolean;
  /** Its round (one closure per connection, not per turn). */
  serve: () => void;
  /** Its records as they come out of the decoder (one closure per connection, not per record). */
  onRecord: (buf: Buffer, start: number, end: number) => void;
  halfRecordTimer: NodeJS.Timeout | undefined;
  paused: boolean;
  /** The server's activity count when the peer last sent something: the least is the least recently active. */
  active: number;
}

/** No call running or waiting and no record half read: closing it loses nothing. */
const idle = (c: Connection): boolean => c.queue.length === 0 && c.backlog.length === 0 && !c.decoder.partial;

const LIMIT_WARN_INTERVAL_MS = 10_000;
/** UDP peers (address and port) whose last credential is kept, per address; past it the cache starts again. */
const UDP_CREDENTIAL_PEERS = 4096;

export class RpcServer {
  /** What the listeners feed: the registry and the protocol, no sockets. */
  readonly dispatcher: RpcDispatcher;
  private readonly listeners = new Map<string, Listener>();
  private readonly connections = new Set<Connection>();
  /** Peer address → its connections (over all local addresses). */
  private readonly byPeer = new Map<string, Set<Connection>>();
  private activity = 0;
  /** Per limit: when its warning was last logged, and how many hits it has not told since. */
  private readonly warned = { server: { at: -Infinity, untold: 0 }, peer: { at: -Infinity, untold: 0 } };
  private readonly log: Logger | undefined;
  private readonly opts: Required<Omit<RpcServerOptions, 'onEvent' | 'log' | 'duplicateCacheSize'>>;
  private readonly emit: (e: RpcServerEvent) => void;
  private chosenPort = 0;
  /** addAddress/removeAddress/close run one at a time: the first bind fixes an ephemeral port for the rest. */
  private ops: Promise<unknown> = Promise.resolve();
  private closed = false;
  private udpInProgress = 0;
  /** The lanes are to be served in this turn (one setImmediate for all of them). */
  private scheduled = false;

  constructor(options: RpcServerOptions = {}) {
    this.opts = {
      maxRecordSize: options.maxRecordSize ?? 1 << 20,
      idleTimeoutMs: options.idleTimeoutMs ?? 6 * 60_000,
      halfRecordTimeoutMs: options.halfRecordTimeoutMs ?? 10_000,
      maxConnections: options.maxConnections ?? 1024,
      maxConnectionsPerPeer: options.maxConnectionsPerPeer ?? 64,
      maxCallsPerConnection: options.maxCallsPerConnection ?? 64,
      callsPerTurn: Math.max(1, options.callsPerTurn ?? 32), // 0 would never start a call
      addressCallsPerTurn: options.addressCallsPerTurn ?? 8,
      laneSliceMs: options.laneSliceMs ?? 0.25,
      udpReceiveBufferSize: options.udpReceiveBufferSize ?? 4 << 20,
      maxUdpCallsInProgress: options.maxUdpCallsInProgress ?? 1024,
    };
    this.emit = guardedObserver(options.onEvent);
    this.log = options.log;
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
      for (const c of this.connections) c.socket.destroy();
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
      const udp = dgram.createSocket({ type: net.isIPv6(address) ? 'udp6' : 'udp4', lookup: literalLookup, recvBufferSize: this.opts.udpReceiveBufferSize });
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
        const l: Listener = { address, udp, tcp, lane: { ran: 0, waiting: [], datagrams: 0 } };
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
    // Its waiting datagrams are never served: out of the count of calls in progress.
    this.udpInProgress -= l.lane.datagrams;
    const tcpClosed = new Promise<void>((resolve) => l.tcp.close(() => resolve()));
    for (const c of this.connections) if (c.meta.local.address === address) c.socket.destroy();
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
      if (this.udpInProgress >= this.opts.maxUdpCallsInProgress) {
        this.emit({ kind: 'drop', transport: 'udp', local, peer, reason: 'too many calls in progress' });
        return;
      }
      const meta: CallMeta = { transport: 'udp', local, peer, credentials: credentialsOf(peer) };
      const { lane } = l;
      if (lane.waiting.length === 0 && this.runNow(lane)) return void this.callUdp(l, msg, rinfo, meta, sendFailed);
      // Datagrams read after the address's removal (in the same read) wait for nothing.
      if (this.listeners.get(l.address) !== l) return;
      this.udpInProgress++;
      lane.datagrams++;
      lane.waiting.push(() => {
        this.udpInProgress--;
        lane.datagrams--;
        this.callUdp(l, msg, rinfo, meta, sendFailed);
      });
      this.schedule();
    });
    l.udp.on('error', (error) => this.emit({ kind: 'error', where: `udp ${l.address}`, error }));
    l.tcp.on('error', (error) => this.emit({ kind: 'error', where: `tcp ${l.address}`, error }));
    l.tcp.on('connection', (socket) => this.accept(socket, local, l.lane));
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

  /** Whether a call of this lane read now may run at once (it counts), or must wait its round. */
  private runNow(lane: Lane): boolean {
    if (lane.ran >= this.opts.addressCallsPerTurn) return false;
    // The allowance is per turn: the lanes' round in this turn starts it again.
    if (lane.ran++ === 0) this.schedule();
    return true;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.serveLanes);
  }

  /**
   * After the turn's reads: every lane's work round-robin, one item (a connection's next calls,
   * up to callsPerTurn, or a datagram) per lane per round, for laneSliceMs; what is left waits
   * for the next turn, after the loop has read its sockets again. Every lane's allowance of
   * calls run as read starts again.
   */
  private readonly serveLanes = (): void => {
    const until = performance.now() + this.opts.laneSliceMs;
    let left = false;
    do {
      left = false;
      for (const { lane } of this.listeners.values()) {
        const next = lane.waiting.shift();
        if (!next) continue;
        next();
        if (lane.waiting.length > 0) left = true;
      }
    } while (left && performance.now() < until);
    left = false;
    for (const { lane } of this.listeners.values()) {
      lane.ran = 0;
      if (lane.waiting.length > 0) left = true;
    }
    if (left) setImmediate(this.serveLanes);
    else this.scheduled = false;
  };

  private sendUdp(l: Listener, reply: Buffer, to: dgram.RemoteInfo, sendFailed: (err: Error | null) => void): void {
    // The address may have been removed while the call ran: its reply has nowhere to go.
    if (this.listeners.get(l.address) !== l) return;
    try {
      l.udp.send(reply, to.port, to.address, sendFailed);
    } catch (err) {
      sendFailed(err as Error);
    }
  }

  private accept(socket: net.Socket, local: Endpoint, lane: Lane): void {
    const remote = socket.remoteAddress; // undefined once the peer is gone
    const peer = { address: remote ? normaliseAddress(remote) : '', port: socket.remotePort ?? 0 };
    const mine = this.byPeer.get(peer.address);
    if (!this.makeRoom(mine, this.opts.maxConnectionsPerPeer, 'peer', local, peer) || !this.makeRoom(this.connections, this.opts.maxConnections, 'server', local, peer)) {
      socket.destroy();
      this.emit({ kind: 'connection', state: 'refused', local, peer, reason: 'too many connections' });
      return;
    }
    const c: Connection = {
      socket,
      meta: { transport: 'tcp', local, peer, credentials: newCredentialCache(), recordMarked: true },
      lane,
      decoder: new RecordDecoder(this.opts.maxRecordSize),
      queue: [],
      backlog: [],
      turn: 0,
      ready: [],
      again: false,
      serve: () => {
        c.again = false;
        if (!c.socket.destroyed) this.pump(c);
      },
      onRecord: (buf, start, end) => {
        if (c.backlog.length === 0 && c.queue.length < this.opts.maxCallsPerConnection && c.turn < this.opts.callsPerTurn && lane.waiting.length === 0 && this.runNow(lane)) {
          c.turn++;
          this.start(c, buf, start, end);
        } else {
          c.backlog.push(buf.subarray(start, end));
        }
      },
      halfRecordTimer: undefined,
      paused: false,
      active: ++this.activity,
    };
    this.connections.add(c);
    if (mine) mine.add(c);
    else this.byPeer.set(peer.address, new Set([c]));
    this.emit({ kind: 'connection', state: 'open', local, peer });
    socket.setTimeout(this.opts.idleTimeoutMs, () => {
      if (c.queue.length === 0 && c.backlog.length === 0) this.drop(c, 'idle');
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      clearTimeout(c.halfRecordTimer);
      this.forget(c);
      this.emit({ kind: 'connection', state: 'closed', local, peer });
    });
    socket.on('drain', () => this.endTurn(c));
    socket.on('data', (chunk) => this.onData(c, chunk));
  }

  /** Out of the counts now (a closed socket's 'close' event comes a turn later); idempotent. */
  private forget(c: Connection): void {
    if (!this.connections.delete(c)) return;
    const mine = this.byPeer.get(c.meta.peer.address);
    mine?.delete(c);
    if (mine?.size === 0) this.byPeer.delete(c.meta.peer.address);
  }

  /**
   * Below the limit, or made so by closing the least recently active idle connection among
   * `among`; false when all of them are busy (the new connection is then refused).
   */
  private makeRoom(among: Set<Connection> | undefined, limit: number, scope: 'server' | 'peer', local: Endpoint, peer: Endpoint): boolean {
    while (among && among.size >= limit) {
      let oldest: Connection | undefined;
      for (const c of among) if (idle(c) && (!oldest || c.active < oldest.active)) oldest = c;
      if (!oldest) {
        this.limitReached({ kind: 'limit', scope, action: 'refused', limit, local, peer });
        return false;
      }
      this.forget(oldest);
      oldest.socket.destroy();
      this.limitReached({ kind: 'limit', scope, action: 'closed-idle', limit, local, peer, closed: oldest.meta.peer });
    }
    return true;
  }

  private limitReached(e: Extract<RpcServerEvent, { kind: 'limit' }>): void {
    this.emit(e);
    if (!this.log) return;
    const w = this.warned[e.scope];
    const now = performance.now();
    if (now - w.at < LIMIT_WARN_INTERVAL_MS) {
      w.untold++;
      return;
    }
    const what = e.scope === 'server' ? `too many open connections (the limit is ${e.limit})` : `too many open connections from ${e.peer.address} (the per-peer limit is ${e.limit})`;
    const done = e.action === 'closed-idle' ? `closed the least recently active idle one (from ${e.closed!.address}:${e.closed!.port})` : `refused a new one from ${e.peer.address}: none is idle`;
    this.log.warn({ scope: e.scope, action: e.action, limit: e.limit, peer: e.peer.address, local: e.local.address, closed: e.closed?.address, untold: w.untold }, `${what}: ${done}${w.untold ? `; ${w.untold} more since the last warning` : ''}`);
    w.at = now;
    w.untold = 0;
  }

  private onData(c: Connection, chunk: Buffer): void {
    c.active = ++this.activity;
    c.turn = 0;
    try {
      c.decoder.feed(chunk, c.onRecord);
    } catch (err) {
      this.drop(c, (err as Error).message);
      return;
    }
    if (c.decoder.partial) {
      c.halfRecordTimer ??= setTimeout(() => this.drop(c, 'half record timed out'), this.opts.halfRecordTimeoutMs);
    } else if (c.halfRecordTimer) {
      clearTimeout(c.halfRecordTimer);
      c.halfRecordTimer = undefined;
    }
    this.endTurn(c);
  }

  /**
   * Its round: starts waiting calls while fewer than the limit are in progress, at most
   * callsPerTurn of them; reads more only when all have started.
   */
  private pump(c: Connection): void {
    c.turn = 0;
    while (c.backlog.length > 0 && c.queue.length < this.opts.maxCallsPerConnection && c.turn < this.opts.callsPerTurn) {
      c.turn++;
      const rec = c.backlog.shift()!;
      this.start(c, rec, 0, rec.length);
    }
    this.endTurn(c);
  }

  /** Runs one call; a synchronous reply waits in `ready` unless an earlier call is still running. */
  private start(c: Connection, buf: Buffer, start: number, end: number): void {
    const reply = this.handleSafely(buf, c.meta, 'tcp dispatch', start, end);
    if (!(reply instanceof Promise)) {
      if (c.queue.length > 0) c.queue.push({ done: true, reply });
      else if (reply) c.ready.push(reply);
      return;
    }
    const slot = { done: false, reply: undefined as Buffer | undefined };
    c.queue.push(slot);
    reply.then(
      (r) => {
        slot.reply = r;
        slot.done = true;
        this.flush(c);
      },
      (error) => {
        this.emit({ kind: 'error', where: 'tcp dispatch', error });
        slot.done = true;
        this.flush(c);
      },
    );
  }

  /**
   * The replies ready at once leave together in one write; calls left waiting (for lack of a turn,
   * a slot or their lane's allowance) wait in the lane for the connection's next round.
   */
  private endTurn(c: Connection): void {
    if (c.ready.length > 0) {
      if (!c.socket.destroyed) writeRecords(c.socket, c.ready);
      c.ready.length = 0;
    }
    if (c.backlog.length > 0 && c.queue.length < this.opts.maxCallsPerConnection && !c.again) {
      c.again = true;
      c.lane.waiting.push(c.serve);
      this.schedule();
    }
    // Not read while its calls wait for a free slot, while it has sent more than it may run at
    // once, or while it does not read its replies.
    const hold = (c.backlog.length > 0 && c.queue.length >= this.opts.maxCallsPerConnection) || c.backlog.length > this.opts.maxCallsPerConnection || c.socket.writableNeedDrain;
    if (hold && !c.paused) {
      c.paused = true;
      c.socket.pause();
    } else if (!hold && c.paused) {
      c.paused = false;
      c.socket.resume();
    }
  }

  private flush(c: Connection): void {
    while (c.queue.length > 0 && c.queue[0]!.done) {
      const { reply } = c.queue.shift()!;
      if (reply) c.ready.push(reply);
    }
    if (c.socket.destroyed) return;
    this.endTurn(c);
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

  private drop(c: Connection, reason: string): void {
    this.emit({ kind: 'drop', transport: 'tcp', local: c.meta.local, peer: c.meta.peer, reason });
    c.socket.destroy();
  }
}
