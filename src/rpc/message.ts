// ONC RPC v2 messages (RFC 5531 section 9): pure encoders and decoders over Buffers.
// Call and reply headers, AUTH_NONE and AUTH_SYS credentials. Malformed input is always an
// XdrDecodeError (or an RpcHeaderError that says how a server should answer it).
import { XdrDecodeError, XdrReader, XdrWriter } from '../xdr';
import { AUTH_NONE, AUTH_SYS, type AuthSysParams, type Credential } from './types';

export const RPC_VERSION = 2;
export const MSG_CALL = 0;
export const MSG_REPLY = 1;
export const MSG_ACCEPTED = 0;
export const MSG_DENIED = 1;

/** accept_stat values (RFC 5531). */
export const ACCEPT_STAT = {
  SUCCESS: 0,
  PROG_UNAVAIL: 1,
  PROG_MISMATCH: 2,
  PROC_UNAVAIL: 3,
  GARBAGE_ARGS: 4,
  SYSTEM_ERR: 5,
} as const;
export type AcceptStat = keyof typeof ACCEPT_STAT;

/** reject_stat values. */
export const REJECT_STAT = { RPC_MISMATCH: 0, AUTH_ERROR: 1 } as const;

/** auth_stat values (RFC 5531 section 9). */
export const AUTH_STAT = {
  AUTH_OK: 0,
  AUTH_BADCRED: 1,
  AUTH_REJECTEDCRED: 2,
  AUTH_BADVERF: 3,
  AUTH_REJECTEDVERF: 4,
  AUTH_TOOWEAK: 5,
  AUTH_INVALIDRESP: 6,
  AUTH_FAILED: 7,
} as const;

/** opaque_auth body limit (RFC 5531: opaque body<400>). */
export const MAX_AUTH_BYTES = 400;
/** AUTH_SYS limits: machinename<255>, gids<16>. */
export const MAX_MACHINE_NAME = 255;
export const MAX_AUTH_SYS_GIDS = 16;

export interface OpaqueAuth {
  flavor: number;
  body: Buffer;
}

export const NULL_AUTH: OpaqueAuth = Object.freeze({ flavor: AUTH_NONE, body: Buffer.alloc(0) }) as OpaqueAuth;

export interface CallHeader {
  xid: number;
  prog: number;
  vers: number;
  proc: number;
  cred: OpaqueAuth;
  verf: OpaqueAuth;
}

export interface DecodedCall extends CallHeader {
  /** Offset of the procedure arguments in the record. */
  argsOffset: number;
}

/** Every reply other than SUCCESS, as a server sends it and a client receives it. */
export type ErrorReply =
  | { stat: 'PROG_UNAVAIL' | 'PROC_UNAVAIL' | 'GARBAGE_ARGS' | 'SYSTEM_ERR' }
  | { stat: 'PROG_MISMATCH'; low: number; high: number }
  | { stat: 'RPC_MISMATCH'; low: number; high: number }
  | { stat: 'AUTH_ERROR'; authStat: number };

export type ReplyStat = 'SUCCESS' | ErrorReply['stat'];

export type DecodedReply =
  | { xid: number; stat: 'SUCCESS'; verf: OpaqueAuth; /** Offset of the results in the record. */ resultsOffset: number }
  | ({ xid: number; verf?: OpaqueAuth } & ErrorReply);

/**
 * A call header a server cannot dispatch. `reply` is the rejection to send (RPC_MISMATCH,
 * AUTH_ERROR); without it the message is dropped (not a call, or too short to answer).
 */
export class RpcHeaderError extends XdrDecodeError {
  constructor(message: string, offset: number, readonly xid?: number, readonly reply?: ErrorReply) {
    super(message, offset);
  }
}

function readOpaqueAuth(r: XdrReader): OpaqueAuth {
  const flavor = r.uint();
  const body = r.opaque(MAX_AUTH_BYTES);
  return { flavor, body };
}

function writeOpaqueAuth(w: XdrWriter, a: OpaqueAuth): void {
  w.uint(a.flavor).opaque(a.body, MAX_AUTH_BYTES);
}

/**
 * Decodes a call header. Anything wrong after the xid that a server must answer comes out as an
 * RpcHeaderError carrying the reply: rpcvers != 2 is RPC_MISMATCH(2, 2), an oversized or
 * truncated credential or verifier is AUTH_ERROR(AUTH_BADCRED / AUTH_BADVERF). The message is
 * buf's window [start, end); offsets (argsOffset, an error's) are buf's.
 */
export function decodeCall(buf: Buffer, start = 0, end = buf.length): DecodedCall {
  const r = new XdrReader(buf, start, end);
  if (end - start < 8) throw new RpcHeaderError(`message of ${end - start} bytes is too short`, start);
  const xid = r.uint();
  const type = r.uint();
  if (type !== MSG_CALL) throw new RpcHeaderError(`not a call (msg_type ${type})`, start + 4, xid);
  if (r.remaining < 4) throw new RpcHeaderError('truncated call header', r.offset, xid);
  const rpcvers = r.uint();
  if (rpcvers !== RPC_VERSION) {
    throw new RpcHeaderError(`rpcvers ${rpcvers}`, start + 8, xid, { stat: 'RPC_MISMATCH', low: RPC_VERSION, high: RPC_VERSION });
  }
  if (r.remaining < 12) throw new RpcHeaderError('truncated call header', r.offset, xid);
  const prog = r.uint();
  const vers = r.uint();
  const proc = r.uint();
  let cred: OpaqueAuth;
  try {
    cred = readOpaqueAuth(r);
  } catch (e) {
    throw new RpcHeaderError(`bad credential: ${(e as Error).message}`, r.offset, xid, { stat: 'AUTH_ERROR', authStat: AUTH_STAT.AUTH_BADCRED });
  }
  let verf: OpaqueAuth;
  try {
    verf = readOpaqueAuth(r);
  } catch (e) {
    throw new RpcHeaderError(`bad verifier: ${(e as Error).message}`, r.offset, xid, { stat: 'AUTH_ERROR', authStat: AUTH_STAT.AUTH_BADVERF });
  }
  return { xid, prog, vers, proc, cred, verf, argsOffset: r.offset };
}

/** Writes a call header; the caller appends the arguments. */
export function writeCallHeader(w: XdrWriter, h: CallHeader): XdrWriter {
  w.uint(h.xid).uint(MSG_CALL).uint(RPC_VERSION).uint(h.prog).uint(h.vers).uint(h.proc);
  writeOpaqueAuth(w, h.cred);
  writeOpaqueAuth(w, h.verf);
  return w;
}

/** A whole call message: header plus already-encoded arguments. */
export function encodeCall(h: CallHeader, args: Uint8Array = Buffer.alloc(0)): Buffer {
  return writeCallHeader(new XdrWriter(64 + args.length), h).raw(args).toBuffer();
}

/** Writes an accepted SUCCESS reply header (verifier AUTH_NONE); the caller appends the results. */
export function writeSuccessHeader(w: XdrWriter, xid: number, verf: OpaqueAuth = NULL_AUTH): XdrWriter {
  w.uint(xid).uint(MSG_REPLY).uint(MSG_ACCEPTED);
  writeOpaqueAuth(w, verf);
  return w.uint(ACCEPT_STAT.SUCCESS);
}

/** A whole error reply (accepted error or rejection). */
export function encodeErrorReply(xid: number, reply: ErrorReply, verf: OpaqueAuth = NULL_AUTH): Buffer {
  const w = new XdrWriter(40).uint(xid).uint(MSG_REPLY);
  switch (reply.stat) {
    case 'RPC_MISMATCH':
      w.uint(MSG_DENIED).uint(REJECT_STAT.RPC_MISMATCH).uint(reply.low).uint(reply.high);
      break;
    case 'AUTH_ERROR':
      w.uint(MSG_DENIED).uint(REJECT_STAT.AUTH_ERROR).uint(reply.authStat);
      break;
    default:
      w.uint(MSG_ACCEPTED);
      writeOpaqueAuth(w, verf);
      w.uint(ACCEPT_STAT[reply.stat]);
      if (reply.stat === 'PROG_MISMATCH') w.uint(reply.low).uint(reply.high);
  }
  return w.toBuffer();
}

/** A whole SUCCESS reply with already-encoded results. */
export function encodeSuccessReply(xid: number, results: Uint8Array = Buffer.alloc(0), verf: OpaqueAuth = NULL_AUTH): Buffer {
  return writeSuccessHeader(new XdrWriter(32 + results.length), xid, verf).raw(results).toBuffer();
}

const acceptStatNames = Object.keys(ACCEPT_STAT) as AcceptStat[];

/** Decodes a reply header; for SUCCESS the results start at resultsOffset. */
export function decodeReply(buf: Buffer): DecodedReply {
  const r = new XdrReader(buf);
  const xid = r.uint();
  const type = r.uint();
  if (type !== MSG_REPLY) throw new XdrDecodeError(`not a reply (msg_type ${type})`, 4);
  const replyStat = r.uint();
  if (replyStat === MSG_ACCEPTED) {
    const verf = readOpaqueAuth(r);
    const at = r.offset;
    const stat = acceptStatNames[r.uint()];
    if (stat === undefined) throw new XdrDecodeError('unknown accept_stat', at);
    switch (stat) {
      case 'SUCCESS': return { xid, stat, verf, resultsOffset: r.offset };
      case 'PROG_MISMATCH': {
        const low = r.uint();
        return { xid, verf, stat, low, high: r.uint() };
      }
      default: return { xid, verf, stat };
    }
  }
  if (replyStat === MSG_DENIED) {
    const at = r.offset;
    const reject = r.uint();
    if (reject === REJECT_STAT.RPC_MISMATCH) {
      const low = r.uint();
      return { xid, stat: 'RPC_MISMATCH', low, high: r.uint() };
    }
    if (reject === REJECT_STAT.AUTH_ERROR) return { xid, stat: 'AUTH_ERROR', authStat: r.uint() };
    throw new XdrDecodeError(`unknown reject_stat ${reject}`, at);
  }
  throw new XdrDecodeError(`unknown reply_stat ${replyStat}`, 8);
}

/** Parses an AUTH_SYS credential body (RFC 5531 appendix A); the body must be consumed exactly. */
export function decodeAuthSys(body: Buffer): AuthSysParams {
  const r = new XdrReader(body);
  const stamp = r.uint();
  const machineName = r.string(MAX_MACHINE_NAME);
  const uid = r.uint();
  const gid = r.uint();
  const gids = r.array((x) => x.uint(), MAX_AUTH_SYS_GIDS);
  r.done();
  return { stamp, machineName, uid, gid, gids };
}

export function encodeAuthSys(p: AuthSysParams): Buffer {
  return new XdrWriter(64)
    .uint(p.stamp)
    .string(p.machineName, MAX_MACHINE_NAME)
    .uint(p.uid)
    .uint(p.gid)
    .array(p.gids, (w, g) => w.uint(g), MAX_AUTH_SYS_GIDS)
    .toBuffer();
}

/**
 * The credential a handler sees. AUTH_NONE and AUTH_SYS are parsed (a malformed AUTH_SYS body
 * throws); other flavors are passed through as opaque bodies for the server to accept or refuse.
 */
export function parseCredential(a: OpaqueAuth): Credential {
  if (a.flavor === AUTH_NONE) return { flavor: AUTH_NONE };
  if (a.flavor === AUTH_SYS) {
    const p = decodeAuthSys(a.body); // fields copied by name: a spread takes a slow path on every call
    return { flavor: AUTH_SYS, stamp: p.stamp, machineName: p.machineName, uid: p.uid, gid: p.gid, gids: p.gids };
  }
  return { flavor: a.flavor, body: a.body };
}

/**
 * The last AUTH_SYS credential one client sent (a TCP connection's, a UDP peer's) and its parse:
 * a client sends the same bytes on every call, so they are compared instead of parsed again.
 * One per client, never shared: another client's bytes are another client's.
 */
export interface CredentialCache {
  body: Buffer | undefined;
  cred: Credential | undefined;
}

export const newCredentialCache = (): CredentialCache => ({ body: undefined, cred: undefined });

/**
 * parseCredential through a client's cache. The same AUTH_SYS bytes as last time give the same
 * (frozen) Credential; other bytes are parsed and, when well-formed, replace it; a malformed body
 * throws as parseCredential does and leaves the cache as it was. Other flavors are not cached.
 */
export function cachedCredential(cache: CredentialCache, a: OpaqueAuth): Credential {
  if (a.flavor !== AUTH_SYS) return parseCredential(a);
  if (cache.cred !== undefined && a.body.equals(cache.body!)) return cache.cred;
  const cred = parseCredential(a);
  if ('gids' in cred) Object.freeze(cred.gids);
  cache.body = Buffer.from(a.body); // a copy: the body is a view into the connection's receive buffer
  cache.cred = Object.freeze(cred);
  return cred;
}

/** The opaque_auth a client sends for a credential. */
export function credentialToOpaqueAuth(c: Credential): OpaqueAuth {
  if (c.flavor === AUTH_NONE) return NULL_AUTH;
  if (c.flavor === AUTH_SYS && 'machineName' in c) return { flavor: AUTH_SYS, body: encodeAuthSys(c) };
  if ('body' in c) return { flavor: c.flavor, body: c.body };
  throw new RangeError(`credential of flavor ${c.flavor} has no body`);
}
