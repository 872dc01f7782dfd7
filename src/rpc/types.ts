// The contract between the RPC layer and the services built on it (nlm, nsm, rpcbind client).
// Services register programs of typed procedures; every call they see carries where it came
// in (local address = the server address) and who sent it.
import type { XdrReader, XdrWriter } from '../xdr';

export type TransportKind = 'udp' | 'tcp';

export interface Endpoint {
  /** Normalised textual address: IPv4 dotted quad (never `::ffff:` mapped) or IPv6. */
  address: string;
  port: number;
}

export const AUTH_NONE = 0;
export const AUTH_SYS = 1;

export interface AuthSysParams {
  stamp: number;
  machineName: string;
  uid: number;
  gid: number;
  gids: number[];
}

export type Credential =
  | { flavor: typeof AUTH_NONE }
  | ({ flavor: typeof AUTH_SYS } & AuthSysParams)
  | { flavor: number; body: Buffer };

export interface CallContext {
  xid: number;
  prog: number;
  vers: number;
  proc: number;
  transport: TransportKind;
  /** The local address and port the call arrived on: for lockdrop, the server address (VIP). */
  local: Endpoint;
  peer: Endpoint;
  cred: Credential;
}

/** Returned by a handler that must not send any reply (e.g. a message whose answer goes by callback). */
export const NO_REPLY: unique symbol = Symbol('rpc.noReply');

/**
 * Returned by a handler that cannot answer yet and wants the call sent again: no reply, and the
 * duplicate-request cache forgets the call so that the client's retransmission runs anew (Linux's
 * rpc_drop_reply, which lockd returns while a lease or delegation is being broken).
 */
export const DROP_REPLY: unique symbol = Symbol('rpc.dropReply');

/** Thrown (or returned) by handlers to answer with an accepted-reply error instead of SUCCESS. */
export class RpcAcceptError extends Error {
  constructor(readonly stat: 'GARBAGE_ARGS' | 'SYSTEM_ERR' | 'PROC_UNAVAIL', message?: string) {
    super(message ?? stat);
  }
}

/** Thrown by handlers to answer MSG_DENIED/AUTH_ERROR (e.g. AUTH_SYS required: AUTH_TOOWEAK = 5). */
export class RpcAuthError extends Error {
  constructor(readonly authStat: number, message?: string) {
    super(message ?? `auth error ${authStat}`);
  }
}

export interface Procedure<A = unknown, R = unknown> {
  name: string;
  decodeArgs(r: XdrReader): A;
  encodeResult(w: XdrWriter, result: R): void;
  handle(args: A, ctx: CallContext): R | typeof NO_REPLY | typeof DROP_REPLY | Promise<R | typeof NO_REPLY | typeof DROP_REPLY>;
  /** Safe to repeat: the duplicate-request cache skips it. Default false. */
  idempotent?: boolean;
}

export interface ProgramVersion {
  prog: number;
  vers: number;
  /** Indexed by procedure number. */
  procedures: ReadonlyMap<number, Procedure<any, any>>;
}
