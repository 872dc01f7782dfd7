// The ONC RPC client: calls to one peer (host and port, or a unix stream socket) over UDP
// (retransmit with exponential backoff inside an overall timeout) or TCP (lazy connect,
// reconnect after close, record marking, concurrent calls matched by xid). An optional source
// address makes calls leave from a chosen local address (callbacks and notices sent "from the VIP").
import dgram from 'node:dgram';
import net from 'node:net';
import { isAddress, normaliseAddress } from '../net';
import { PendingCalls, type ArgsEncoder, type ResultDecoder } from './calls';
import { RpcConnectionError } from './errors';
import { credentialToOpaqueAuth, NULL_AUTH, type OpaqueAuth } from './message';
import { encodeRecord, RecordDecoder } from './record';
import type { Credential } from './types';

export type RpcClientOptions = {
  /** Credential sent with every call unless a call says otherwise. Default AUTH_NONE. */
  cred?: Credential;
  /** Overall time a call may take, retransmissions included. Default 10 s. */
  timeoutMs?: number;
  /** UDP: first retransmission after this long, then doubling (jittered) up to maxRetransmitMs. Default 500 ms. */
  retransmitMs?: number;
  maxRetransmitMs?: number;
  /** TCP: largest reply record accepted. Default 1 MiB. */
  maxRecordSize?: number;
} & (
  | {
      transport: 'udp' | 'tcp';
      host: string;
      port: number;
      /** Local address to send from. */
      source?: string;
      /** Local port to send from (default: any). */
      sourcePort?: number;
    }
  /** A unix-domain stream socket (record marking, like TCP), e.g. /run/rpcbind.sock. */
  | { transport: 'unix'; path: string }
);

export interface CallOptions {
  timeoutMs?: number;
  retransmitMs?: number;
  cred?: Credential;
}

const noArgs: ArgsEncoder = () => undefined;

export class RpcClient {
  private readonly calls = new PendingCalls();
  private udp: Promise<dgram.Socket> | undefined;
  private tcp: Promise<net.Socket> | undefined;
  private closed = false;
  private readonly cred: OpaqueAuth;

  private readonly opts: RpcClientOptions;

  constructor(opts: RpcClientOptions) {
    // A mapped peer or source (::ffff:a.b.c.d) is reached over IPv4, like every other IPv4 address.
    this.opts = opts.transport === 'unix'
      ? opts
      : { ...opts, host: isAddress(opts.host) ? normaliseAddress(opts.host) : opts.host, ...(opts.source !== undefined ? { source: normaliseAddress(opts.source) } : {}) };
    this.cred = opts.cred ? credentialToOpaqueAuth(opts.cred) : NULL_AUTH;
  }

  /** Calls a procedure and resolves with its decoded results; rejects with RpcTimeoutError, RpcReplyError or RpcConnectionError. */
  call<R>(prog: number, vers: number, proc: number, encodeArgs: ArgsEncoder = noArgs, decodeResult: ResultDecoder<R> = () => undefined as R, opts: CallOptions = {}): Promise<R> {
    if (this.closed) return Promise.reject(new RpcConnectionError('client is closed'));
    let xid: number;
    let msg: Buffer;
    try {
      ({ xid, msg } = this.calls.encode(prog, vers, proc, encodeArgs, this.credential(opts.cred)));
    } catch (err) {
      return Promise.reject(err);
    }
    const timeoutMs = opts.timeoutMs ?? this.opts.timeoutMs ?? 10_000;
    if (this.opts.transport !== 'udp') {
      const answered = this.calls.wait(xid, { prog, vers, proc, decode: decodeResult, timeoutMs });
      this.sendRecord(msg, xid).catch((err) => this.calls.fail(xid, err));
      return answered;
    }
    const send = (): void => void this.sendDatagram(msg).catch((err) => this.calls.fail(xid, err));
    const backoff = { initialMs: opts.retransmitMs ?? this.opts.retransmitMs ?? 500, maxMs: this.opts.maxRetransmitMs ?? 4_000 };
    return this.calls.wait(xid, { prog, vers, proc, decode: decodeResult, timeoutMs, retransmit: { send, backoff } });
  }

  /** Sends one call and waits for no reply (e.g. NLM *_MSG and *_RES messages). Resolves once handed to the kernel. */
  async send(prog: number, vers: number, proc: number, encodeArgs: ArgsEncoder = noArgs, opts: Pick<CallOptions, 'cred'> = {}): Promise<void> {
    if (this.closed) throw new RpcConnectionError('client is closed');
    const { msg } = this.calls.encode(prog, vers, proc, encodeArgs, this.credential(opts.cred));
    if (this.opts.transport === 'udp') await this.sendDatagram(msg);
    else await this.sendRecord(msg);
  }

  /** Closes the sockets; calls still waiting fail with RpcConnectionError. */
  close(): void {
    this.closed = true;
    this.calls.failAll(new RpcConnectionError('client is closed'));
    const udp = this.udp;
    const tcp = this.tcp;
    this.udp = this.tcp = undefined;
    udp?.then((s) => s.close(), () => undefined);
    tcp?.then((s) => s.destroy(), () => undefined);
  }

  private credential(cred: Credential | undefined): OpaqueAuth {
    return cred ? credentialToOpaqueAuth(cred) : this.cred;
  }

  private async sendDatagram(msg: Buffer): Promise<void> {
    const s = await (this.udp ??= this.openUdp());
    await new Promise<void>((resolve, reject) => s.send(msg, (err) => (err ? reject(new RpcConnectionError(err.message, (err as NodeJS.ErrnoException).code)) : resolve())));
  }

  private openUdp(): Promise<dgram.Socket> {
    const o = this.opts;
    if (o.transport === 'unix') throw new Error('unreachable');
    const s = dgram.createSocket({ type: net.isIPv6(o.host) ? 'udp6' : 'udp4' });
    // An idle client never keeps the process alive; a call's own timer does while it waits.
    s.unref();
    const opened = new Promise<dgram.Socket>((resolve, reject) => {
      s.once('error', (err: NodeJS.ErrnoException) => reject(new RpcConnectionError(`udp ${o.source ?? '*'} -> ${o.host}:${o.port}: ${err.message}`, err.code)));
      s.bind({ address: o.source, port: o.sourcePort ?? 0 }, () => {
        s.connect(o.port, o.host, () => resolve(s));
      });
    });
    s.on('message', (msg) => this.calls.onReply(msg));
    // On a connected socket, an ICMP port unreachable comes back as ECONNREFUSED: nobody serves that port.
    s.on('error', (err: NodeJS.ErrnoException) => this.calls.failAll(new RpcConnectionError(`udp ${o.host}:${o.port}: ${err.message}`, err.code)));
    opened.catch(() => {
      s.close();
      if (this.udp === opened) this.udp = undefined;
    });
    return opened;
  }

  /** Sends a record; the call `xid` (if any) fails when this connection closes. */
  private async sendRecord(msg: Buffer, xid?: number): Promise<void> {
    const s = await (this.tcp ??= this.openStream());
    if (xid !== undefined) this.calls.sentVia(xid, s);
    await new Promise<void>((resolve, reject) => s.write(encodeRecord(msg), (err) => (err ? reject(new RpcConnectionError(err.message, (err as NodeJS.ErrnoException).code)) : resolve())));
  }

  private openStream(): Promise<net.Socket> {
    const o = this.opts;
    const s = o.transport === 'unix'
      ? net.connect({ path: o.path })
      : net.connect({ host: (o as { host: string }).host, port: (o as { port: number }).port, localAddress: (o as { source?: string }).source, localPort: (o as { sourcePort?: number }).sourcePort, noDelay: true });
    s.unref();
    const where = o.transport === 'unix' ? o.path : `${o.host}:${o.port}`;
    const decoder = new RecordDecoder(this.opts.maxRecordSize ?? 1 << 20);
    const opened = new Promise<net.Socket>((resolve, reject) => {
      s.once('connect', () => resolve(s));
      s.once('error', (err: NodeJS.ErrnoException) => reject(new RpcConnectionError(`connect ${where}: ${err.message}`, err.code)));
    });
    s.on('data', (chunk) => {
      try {
        for (const rec of decoder.push(chunk)) this.calls.onReply(rec);
      } catch {
        s.destroy();
      }
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      // Reconnect on the next call; calls sent on this connection will get no reply.
      if (this.tcp === opened) this.tcp = undefined;
      this.calls.failVia(s, new RpcConnectionError(`connection to ${where} closed`));
    });
    return opened;
  }
}

/** One call on a throw-away client (e.g. a GETPORT). */
export async function callOnce<R>(opts: RpcClientOptions, prog: number, vers: number, proc: number, encodeArgs: ArgsEncoder, decodeResult: ResultDecoder<R>, callOpts?: CallOptions): Promise<R> {
  const c = new RpcClient(opts);
  try {
    return await c.call(prog, vers, proc, encodeArgs, decodeResult, callOpts);
  } finally {
    c.close();
  }
}
