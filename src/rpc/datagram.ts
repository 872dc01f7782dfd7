// UDP calls to many peers over one unconnected socket bound to a source address: one socket and
// two datagrams per peer instead of a connected socket each, for a sender that tells thousands of
// hosts one thing. Replies are matched by xid and by the peer the call went to; each call
// retransmits with backoff inside its own timeout.
import { randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import { familyOf, type BackoffOptions } from '../net';
import { PendingCalls, type ArgsEncoder, type ResultDecoder } from './calls';
import { credentialToOpaqueAuth, NULL_AUTH } from './message';
import type { Credential } from './types';

export interface DatagramCallOptions {
  /** The whole call, retransmissions included. */
  timeoutMs: number;
  /** The retransmissions: the first after `initialMs` exactly, then growing (jittered) up to `maxMs`. */
  retransmit: BackoffOptions;
  /** Default AUTH_NONE. */
  cred?: Credential;
}

export class DatagramCaller {
  private readonly calls = new PendingCalls();

  private constructor(private readonly socket: dgram.Socket) {
    socket.on('message', (msg, rinfo) => this.calls.onReply(msg, rinfo));
    // Unconnected: ICMP errors are not reported; a failed send fails its call through the send callback.
    socket.on('error', () => undefined);
  }

  /**
   * Binds to the source address (port 0: any); with `reserved`, to a port below 1024 as
   * bindresvport does (some servers answer only privileged ports).
   */
  static async open(source: string, opts: { reserved?: boolean; recvBufferSize?: number } = {}): Promise<DatagramCaller> {
    const tries = opts.reserved ? [...Array.from({ length: 8 }, () => randomInt(600, 1024)), 0] : [0];
    let last: Error | undefined;
    for (const port of tries) {
      const s = dgram.createSocket({ type: familyOf(source) === 6 ? 'udp6' : 'udp4', ...(opts.recvBufferSize ? { recvBufferSize: opts.recvBufferSize } : {}) });
      try {
        await new Promise<void>((resolve, reject) => {
          s.once('error', reject);
          s.bind({ address: source, port, exclusive: true }, () => {
            s.off('error', reject);
            resolve();
          });
        });
        return new DatagramCaller(s);
      } catch (err) {
        s.close();
        last = err as Error;
        // Only a port clash is worth another try; a source address that is not local is final.
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' && (err as NodeJS.ErrnoException).code !== 'EACCES') break;
      }
    }
    throw last;
  }

  /** Resolves with the decoded results; rejects with RpcTimeoutError, RpcReplyError or the send's error. */
  call<R>(host: string, port: number, prog: number, vers: number, proc: number, encodeArgs: ArgsEncoder, decode: ResultDecoder<R>, opts: DatagramCallOptions): Promise<R> {
    const { xid, msg } = this.calls.encode(prog, vers, proc, encodeArgs, opts.cred ? credentialToOpaqueAuth(opts.cred) : NULL_AUTH);
    const send = (): void => this.socket.send(msg, port, host, (err) => err && this.calls.fail(xid, err));
    return this.calls.wait(xid, { prog, vers, proc, decode, timeoutMs: opts.timeoutMs, peer: { address: host, port }, retransmit: { send, backoff: opts.retransmit } });
  }

  /** Fails the calls still waiting and closes the socket. */
  close(): void {
    this.calls.failAll(new Error('closed'));
    this.socket.close();
  }
}
