// Errors an RPC client call can end in, typed so callers can tell "nobody answered" from
// "the peer answered PROG_UNAVAIL" from "the connection broke".
import type { ErrorReply } from './message';

export class RpcError extends Error {
  override name = 'RpcError';
}

/** No reply within the call's overall timeout (after every retransmission). */
export class RpcTimeoutError extends RpcError {
  override name = 'RpcTimeoutError';
  constructor(readonly prog: number, readonly vers: number, readonly proc: number, readonly ms: number) {
    super(`RPC ${prog}/${vers}/${proc} timed out after ${ms} ms`);
  }
}

/** The peer answered, but not SUCCESS: `reply.stat` says how (PROG_UNAVAIL, AUTH_ERROR, ...). */
export class RpcReplyError extends RpcError {
  override name = 'RpcReplyError';
  constructor(readonly reply: ErrorReply, readonly prog: number, readonly vers: number, readonly proc: number) {
    super(`RPC ${prog}/${vers}/${proc}: ${describe(reply)}`);
  }

  get stat(): ErrorReply['stat'] {
    return this.reply.stat;
  }
}

/** The transport failed: connection refused or reset, ICMP unreachable, client closed. `code` is the errno when there is one. */
export class RpcConnectionError extends RpcError {
  override name = 'RpcConnectionError';
  constructor(message: string, readonly code?: string) {
    super(message);
  }
}

function describe(r: ErrorReply): string {
  switch (r.stat) {
    case 'PROG_MISMATCH':
    case 'RPC_MISMATCH':
      return `${r.stat} (supported ${r.low}..${r.high})`;
    case 'AUTH_ERROR':
      return `AUTH_ERROR (auth_stat ${r.authStat})`;
    default:
      return r.stat;
  }
}
