// The TCP connections of the RPC server's listeners: records read off each (record marking),
// calls started in their address's lane, replies written in call order, and the limits that keep
// one peer or one burst from taking the server: connections in all and per peer (the least
// recently active idle one makes room), calls in progress per connection, calls started per turn,
// backpressure from a peer that does not read its replies, idle and half-record timeouts.
import type net from 'node:net';
import type { Logger } from 'pino';
import { normaliseAddress } from '../net';
import type { CallMeta, RpcDispatchEvent } from './dispatcher';
import type { Lane, Lanes } from './lanes';
import { newCredentialCache } from './message';
import { RecordDecoder } from './record';
import type { Endpoint } from './types';

/** The connections' own events (the dispatcher's come through the same observer). */
export type ConnectionEvent =
  | { kind: 'connection'; state: 'open' | 'closed' | 'refused'; local: Endpoint; peer: Endpoint; reason?: string }
  /**
   * A new connection met a limit: the least recently active idle connection (of all, or of that
   * peer) was closed to make room, or the new one was refused because none was idle.
   */
  | { kind: 'limit'; scope: 'server' | 'peer'; action: 'closed-idle' | 'refused'; limit: number; local: Endpoint; peer: Endpoint; closed?: Endpoint };

/** See RpcServerOptions, where each is described and given its default. */
export interface ConnectionLimits {
  maxRecordSize: number;
  idleTimeoutMs: number;
  halfRecordTimeoutMs: number;
  maxConnections: number;
  maxConnectionsPerPeer: number;
  maxCallsPerConnection: number;
  callsPerTurn: number;
}

/** The dispatcher's handle() over a record in a buffer, never throwing. */
export type HandleCall = (msg: Buffer, meta: CallMeta, where: string, start: number, end: number) => Buffer | undefined | Promise<Buffer | undefined>;

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
  /** Replies that came out of promises (a journal's commit answers many calls at once) are written once per tick, together. */
  flushQueued: boolean;
  flushNow: () => void;
  /** Its records as they come out of the decoder (one closure per connection, not per record). */
  onRecord: (buf: Buffer, start: number, end: number) => void;
  halfRecordTimer: NodeJS.Timeout | undefined;
  paused: boolean;
  /** The activity count when the peer last sent something: the least is the least recently active. */
  active: number;
}

/** No call running or waiting and no record half read: closing it loses nothing. */
const idle = (c: Connection): boolean => c.queue.length === 0 && c.backlog.length === 0 && !c.decoder.partial;

/** Writes replies (records, their marks in front) in one write, and one syscall: one as it is, more joined. */
function writeRecords(socket: net.Socket, replies: Buffer[]): void {
  socket.write(replies.length === 1 ? replies[0]! : Buffer.concat(replies));
}

const LIMIT_WARN_INTERVAL_MS = 10_000;

export class TcpConnections {
  private readonly connections = new Set<Connection>();
  /** Peer address → its connections (over all local addresses). */
  private readonly byPeer = new Map<string, Set<Connection>>();
  private activity = 0;
  /** Per limit: when its warning was last logged, and how many hits it has not told since. */
  private readonly warned = { server: { at: -Infinity, untold: 0 }, peer: { at: -Infinity, untold: 0 } };

  constructor(
    private readonly opts: ConnectionLimits,
    private readonly lanes: Lanes,
    private readonly handle: HandleCall,
    private readonly emit: (e: ConnectionEvent | RpcDispatchEvent) => void,
    private readonly log: Logger | undefined,
  ) {}

  /** Every connection made to the local address (it went away) is closed. */
  closeTo(address: string): void {
    for (const c of this.connections) if (c.meta.local.address === address) c.socket.destroy();
  }

  closeAll(): void {
    for (const c of this.connections) c.socket.destroy();
  }

  /** A connection arrived on a listener of `local`: taken (making room if needed) or refused. */
  accept(socket: net.Socket, local: Endpoint, lane: Lane): void {
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
      flushQueued: false,
      flushNow: () => {
        c.flushQueued = false;
        this.flush(c);
      },
      onRecord: (buf, start, end) => {
        if (c.backlog.length === 0 && c.queue.length < this.opts.maxCallsPerConnection && c.turn < this.opts.callsPerTurn && lane.waiting.length === 0 && this.lanes.runNow(lane)) {
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

  private limitReached(e: Extract<ConnectionEvent, { kind: 'limit' }>): void {
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
    const reply = this.handle(buf, c.meta, 'tcp dispatch', start, end);
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
        this.flushSoon(c);
      },
      (error) => {
        this.emit({ kind: 'error', where: 'tcp dispatch', error });
        slot.done = true;
        this.flushSoon(c);
      },
    );
  }

  /** After the promises settled in this tick (a nextTick runs once the microtasks are done): one write for all their replies. */
  private flushSoon(c: Connection): void {
    if (c.flushQueued) return;
    c.flushQueued = true;
    process.nextTick(c.flushNow);
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
      this.lanes.schedule();
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

  private drop(c: Connection, reason: string): void {
    this.emit({ kind: 'drop', transport: 'tcp', local: c.meta.local, peer: c.meta.peer, reason });
    c.socket.destroy();
  }
}
