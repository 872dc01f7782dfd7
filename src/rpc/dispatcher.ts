// The RPC server's protocol half, without sockets: the registry of program versions, the call
// header and credential checks, the duplicate-request cache, running the procedure and encoding
// its answer. The listeners (server.ts) feed it messages with where they came in; tests and
// benchmarks call handle() directly.
import { XdrDecodeError, XdrReader, XdrWriter } from '../xdr';
import { DuplicateRequestCache } from './drc';
import { encodeRecord, LAST_FRAGMENT } from './record';
import {
  AUTH_STAT,
  cachedCredential,
  decodeCall,
  encodeErrorReply,
  parseCredential,
  RpcHeaderError,
  type CredentialCache,
  writeSuccessHeader,
  type DecodedCall,
  type ErrorReply,
  type ReplyStat,
} from './message';
import {
  AUTH_NONE,
  AUTH_SYS,
  DROP_REPLY,
  NO_REPLY,
  RpcAcceptError,
  RpcAuthError,
  type CallContext,
  type Credential,
  type Endpoint,
  type Procedure,
  type ProgramVersion,
  type TransportKind,
} from './types';

/** Where a call came in: the transport, the local address (the server address) and the peer. */
export interface CallMeta {
  transport: TransportKind;
  local: Endpoint;
  peer: Endpoint;
  /** The client's credential cache (its connection's, or its UDP address and port's); without it every credential is parsed. */
  credentials?: CredentialCache;
  /** Replies come with their record mark in front (TCP): encoded after it, not copied behind one. */
  recordMarked?: boolean;
}

export type RpcDispatchEvent =
  | { kind: 'call'; transport: TransportKind; prog: number; vers: number; proc: number; stat: ReplyStat | 'NO_REPLY'; ms: number }
  /** A message dropped without reply: unparseable, a reply, or a duplicate still in progress. */
  | { kind: 'drop'; transport: TransportKind; local: Endpoint; peer: Endpoint; reason: string }
  /** A UDP retransmission answered from the duplicate-request cache. */
  | { kind: 'duplicate'; local: Endpoint; peer: Endpoint; xid: number }
  /** A handler or encoder threw (answered SYSTEM_ERR), or a socket failed. */
  | { kind: 'error'; where: string; error: unknown };

export interface RpcDispatcherOptions {
  /** UDP duplicate-request cache entries. Default 1024. */
  duplicateCacheSize?: number;
  /** Cheap, synchronous observer for metrics and logs; must not throw. */
  onEvent?: (e: RpcDispatchEvent) => void;
}

/** An observer that cannot hurt: its failure never reaches the protocol. */
export function guardedObserver<E>(onEvent: ((e: E) => void) | undefined): (e: E) => void {
  return (e) => {
    if (!onEvent) return;
    try {
      onEvent(e);
    } catch {
      // An observer's failure must not reach the protocol.
    }
  };
}

/** An error reply as the listener sends it: with its record mark when the meta asks for one (errors are rare: a copy). */
const marked = (meta: CallMeta, reply: Buffer): Buffer => (meta.recordMarked ? encodeRecord(reply) : reply);

export class RpcDispatcher {
  private readonly programs = new Map<number, Map<number, ProgramVersion>>();
  private readonly drc: DuplicateRequestCache;
  /** Set: the per-call timing and event are worth their cost. */
  private readonly observed: boolean;
  private readonly emit: (e: RpcDispatchEvent) => void;

  constructor(options: RpcDispatcherOptions = {}) {
    this.drc = new DuplicateRequestCache(options.duplicateCacheSize ?? 1024);
    this.observed = options.onEvent !== undefined;
    this.emit = guardedObserver(options.onEvent);
  }

  register(p: ProgramVersion): void {
    let versions = this.programs.get(p.prog);
    if (!versions) this.programs.set(p.prog, (versions = new Map()));
    if (versions.has(p.vers)) throw new Error(`program ${p.prog} version ${p.vers} is already registered`);
    versions.set(p.vers, p);
  }

  unregister(prog: number, vers: number): void {
    const versions = this.programs.get(prog);
    versions?.delete(vers);
    if (versions?.size === 0) this.programs.delete(prog);
  }

  /**
   * Handles one call message as arrived with the given metadata and returns the reply to send
   * (undefined: send nothing). Never throws for anything a peer can send. A Promise only when the
   * handler answers asynchronously: the listeners send synchronous replies in the same turn, with
   * no microtask or closure per call. The message is msg's window [start, end) (a record in the
   * chunk it came in: no Buffer of its own).
   */
  handle(msg: Buffer, meta: CallMeta, start = 0, end = msg.length): Buffer | undefined | Promise<Buffer | undefined> {
    const started = this.observed ? performance.now() : 0;
    let call: DecodedCall;
    try {
      call = decodeCall(msg, start, end);
    } catch (err) {
      // A header we can still answer (RPC_MISMATCH, a bad credential) is answered, not dropped.
      if (err instanceof RpcHeaderError && err.reply && err.xid !== undefined) return marked(meta, encodeErrorReply(err.xid, err.reply));
      this.emit({ kind: 'drop', transport: meta.transport, local: meta.local, peer: meta.peer, reason: (err as Error).message });
      return undefined;
    }
    const { xid, prog, vers, proc } = call;

    let cred: Credential;
    try {
      cred = meta.credentials ? cachedCredential(meta.credentials, call.cred) : parseCredential(call.cred);
    } catch {
      return this.fail(call, meta, started, { stat: 'AUTH_ERROR', authStat: AUTH_STAT.AUTH_BADCRED });
    }
    if (cred.flavor !== AUTH_NONE && cred.flavor !== AUTH_SYS) return this.fail(call, meta, started, { stat: 'AUTH_ERROR', authStat: AUTH_STAT.AUTH_BADCRED });

    const versions = this.programs.get(prog);
    if (!versions) return this.fail(call, meta, started, { stat: 'PROG_UNAVAIL' });
    const program = versions.get(vers);
    if (!program) {
      let low = Infinity;
      let high = 0;
      for (const v of versions.keys()) {
        low = Math.min(low, v);
        high = Math.max(high, v);
      }
      return this.fail(call, meta, started, { stat: 'PROG_MISMATCH', low, high });
    }
    const procedure: Procedure | undefined = program.procedures.get(proc);
    if (!procedure) return this.fail(call, meta, started, { stat: 'PROC_UNAVAIL' });

    let args: unknown;
    try {
      const r = new XdrReader(msg, call.argsOffset, end);
      args = procedure.decodeArgs(r);
      r.done();
    } catch (err) {
      if (!(err instanceof XdrDecodeError)) this.emit({ kind: 'error', where: `decode ${prog}/${vers}/${proc}`, error: err });
      return this.fail(call, meta, started, { stat: 'GARBAGE_ARGS' });
    }

    const cached = meta.transport === 'udp' && !procedure.idempotent;
    if (cached) {
      if (start !== 0 || end !== msg.length) msg = msg.subarray(start, end); // the cache compares whole messages
      const seen = this.drc.begin(xid, meta.peer, meta.local.address, msg);
      if (seen.kind !== 'new') {
        if (seen.kind === 'done') this.emit({ kind: 'duplicate', local: meta.local, peer: meta.peer, xid });
        else this.emit({ kind: 'drop', transport: 'udp', local: meta.local, peer: meta.peer, reason: 'duplicate in progress' });
        return seen.kind === 'done' ? seen.reply : undefined;
      }
    }

    const ctx: CallContext = { xid, prog, vers, proc, transport: meta.transport, local: meta.local, peer: meta.peer, cred };
    let result: unknown;
    try {
      result = procedure.handle(args, ctx);
    } catch (err) {
      return this.failed(call, meta, started, cached, msg, err);
    }
    if (typeof (result as PromiseLike<unknown> | undefined)?.then === 'function') {
      return Promise.resolve(result).then(
        (r) => this.answered(call, meta, started, procedure, cached, msg, r),
        (err) => this.failed(call, meta, started, cached, msg, err),
      );
    }
    return this.answered(call, meta, started, procedure, cached, msg, result);
  }

  /** Encodes a handler's result (an encoder that throws fails the call like a handler would). */
  private answered(call: DecodedCall, meta: CallMeta, started: number, procedure: Procedure, cached: boolean, msg: Buffer, result: unknown): Buffer | undefined {
    let reply: Buffer | undefined;
    if (result === DROP_REPLY) {
      // Not answered now: a retransmission runs again rather than finding "no reply" cached.
      if (cached) this.drc.abandon(call.xid, meta.peer, meta.local.address, msg);
      if (this.observed) this.callEvent(call, meta, started, 'NO_REPLY');
      return undefined;
    }
    if (result !== NO_REPLY) {
      try {
        const w = new XdrWriter(256);
        if (meta.recordMarked) w.uint(0);
        writeSuccessHeader(w, call.xid);
        procedure.encodeResult(w, result);
        reply = w.view(); // the writer is dropped here: its view is the reply
        if (meta.recordMarked) reply.writeUInt32BE(LAST_FRAGMENT + reply.length - 4, 0);
      } catch (err) {
        return this.failed(call, meta, started, cached, msg, err);
      }
    }
    if (cached) this.drc.finish(call.xid, meta.peer, meta.local.address, msg, reply);
    if (this.observed) this.callEvent(call, meta, started, reply === undefined ? 'NO_REPLY' : 'SUCCESS');
    return reply;
  }

  private failed(call: DecodedCall, meta: CallMeta, started: number, cached: boolean, msg: Buffer, err: unknown): Buffer {
    let r: ErrorReply;
    if (err instanceof RpcAcceptError) r = { stat: err.stat };
    else if (err instanceof RpcAuthError) r = { stat: 'AUTH_ERROR', authStat: err.authStat };
    else {
      this.emit({ kind: 'error', where: `handler ${call.prog}/${call.vers}/${call.proc}`, error: err });
      // Unexpected failure: let a retransmission try again rather than replay the error.
      if (cached) this.drc.abandon(call.xid, meta.peer, meta.local.address, msg);
      return this.fail(call, meta, started, { stat: 'SYSTEM_ERR' });
    }
    const reply = encodeErrorReply(call.xid, r);
    if (cached) this.drc.finish(call.xid, meta.peer, meta.local.address, msg, reply);
    return this.fail(call, meta, started, r, reply);
  }

  private fail(call: DecodedCall, meta: CallMeta, started: number, r: ErrorReply, reply = encodeErrorReply(call.xid, r)): Buffer {
    if (this.observed) this.callEvent(call, meta, started, r.stat);
    return marked(meta, reply);
  }

  private callEvent(call: DecodedCall, meta: CallMeta, started: number, stat: ReplyStat | 'NO_REPLY'): void {
    this.emit({ kind: 'call', transport: meta.transport, prog: call.prog, vers: call.vers, proc: call.proc, stat, ms: performance.now() - started });
  }
}
