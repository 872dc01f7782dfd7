// What every RPC client shares, whatever its socket: xids, the calls still waiting for a reply,
// matching a reply to its call (and, on a socket that talks to many peers, to the peer the call
// went to), decoding it into the call's result or a typed error, and a call's timers (the
// retransmissions over UDP, the overall timeout always). RpcClient (one peer, connected UDP or a
// stream) and DatagramCaller (many peers over one unconnected UDP socket) are built on it.
import { randomInt } from 'node:crypto';
import { Backoff, normaliseAddress, type BackoffOptions } from '../net';
import { XdrReader, XdrWriter } from '../xdr';
import { RpcError, RpcReplyError, RpcTimeoutError } from './errors';
import { decodeReply, NULL_AUTH, writeCallHeader, type OpaqueAuth } from './message';
import type { Endpoint } from './types';

export type ArgsEncoder = (w: XdrWriter) => void;
export type ResultDecoder<R> = (r: XdrReader) => R;

interface Pending {
  prog: number;
  vers: number;
  proc: number;
  decode: ResultDecoder<unknown>;
  resolve(v: unknown): void;
  reject(e: Error): void;
  /** The next retransmission or the end of the call: one timer per call. */
  timer: NodeJS.Timeout | undefined;
  /** Only this peer may answer (a socket that talks to many). */
  peer: Endpoint | undefined;
  /** What the call went out on (a stream connection whose loss fails it). */
  via: unknown;
}

export class PendingCalls {
  private readonly pending = new Map<number, Pending>();
  private xid = randomInt(0, 0x7fffffff);

  /** A new call message under a fresh xid. */
  encode(prog: number, vers: number, proc: number, encodeArgs: ArgsEncoder, cred: OpaqueAuth = NULL_AUTH): { xid: number; msg: Buffer } {
    this.xid = (this.xid + 1) >>> 0;
    const xid = this.xid;
    const w = new XdrWriter(128);
    writeCallHeader(w, { xid, prog, vers, proc, cred, verf: NULL_AUTH });
    encodeArgs(w);
    return { xid, msg: w.toBuffer() };
  }

  /**
   * Waits for xid's reply: resolves with the decoded results of a SUCCESS, rejects with
   * RpcReplyError for any other reply, RpcTimeoutError after timeoutMs. With `retransmit`, calls
   * `send` again after each of its waits until then; `send` reports its own failure by fail().
   */
  wait<R>(
    xid: number,
    call: { prog: number; vers: number; proc: number; decode: ResultDecoder<R>; timeoutMs: number; peer?: Endpoint; retransmit?: { send: () => void; backoff: BackoffOptions } },
  ): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const { prog, vers, proc, timeoutMs, retransmit } = call;
      const peer = call.peer && { address: normaliseAddress(call.peer.address), port: call.peer.port };
      const p: Pending = { prog, vers, proc, decode: call.decode, resolve: resolve as (v: unknown) => void, reject, timer: undefined, peer, via: undefined };
      this.pending.set(xid, p);
      const end = Date.now() + timeoutMs;
      const timedOut = (): void => this.fail(xid, new RpcTimeoutError(prog, vers, proc, timeoutMs));
      if (!retransmit) {
        p.timer = setTimeout(timedOut, timeoutMs);
        return;
      }
      const interval = new Backoff(retransmit.backoff);
      const transmit = (): void => {
        const left = end - Date.now();
        if (left <= 0) return timedOut();
        retransmit.send();
        if (this.pending.get(xid) !== p) return;
        // No retransmission at the deadline itself: a timer fires up to a few ms early by Date.now(),
        // and a last datagram then could only meet a closed port (ECONNREFUSED) instead of timing out.
        const wait = interval.next();
        p.timer = wait < left ? setTimeout(transmit, wait) : setTimeout(timedOut, left);
      };
      transmit();
    });
  }

  /** Notes what the call went out on (see failVia). */
  sentVia(xid: number, via: unknown): void {
    const p = this.pending.get(xid);
    if (p) p.via = via;
  }

  fail(xid: number, err: Error): void {
    this.settle(xid, err);
  }

  failAll(err: Error): void {
    for (const xid of [...this.pending.keys()]) this.settle(xid, err);
  }

  /** Fails the calls that went out on `via` (a connection that closed: their replies cannot come). */
  failVia(via: unknown, err: Error): void {
    for (const [xid, p] of [...this.pending]) if (p.via === via) this.settle(xid, err);
  }

  /**
   * A message that may be a reply: settles the call it answers. Garbage, strays and, when the
   * call named its peer, replies from anyone else are ignored.
   */
  onReply(buf: Buffer, from?: Endpoint): void {
    let reply;
    try {
      reply = decodeReply(buf);
    } catch {
      return;
    }
    const p = this.pending.get(reply.xid);
    if (!p) return;
    if (p.peer && (!from || p.peer.port !== from.port || p.peer.address !== normaliseAddress(from.address))) return;
    if (reply.stat !== 'SUCCESS') {
      const { xid: _x, verf: _v, ...err } = reply;
      return this.settle(reply.xid, new RpcReplyError(err, p.prog, p.vers, p.proc));
    }
    let value: unknown;
    try {
      value = p.decode(new XdrReader(buf, reply.resultsOffset));
    } catch (err) {
      return this.settle(reply.xid, err instanceof Error ? err : new RpcError(String(err)));
    }
    this.settle(reply.xid, { value });
  }

  private settle(xid: number, outcome: Error | { value: unknown }): void {
    const p = this.pending.get(xid);
    if (!p) return;
    this.pending.delete(xid);
    clearTimeout(p.timer);
    if (outcome instanceof Error) p.reject(outcome);
    else p.resolve(outcome.value);
  }
}
