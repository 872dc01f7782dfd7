// rpcbind / portmapper (RFC 1833): registering our services with the local rpcbind, and
// GETPORT to find a peer's service (its lock manager for callbacks, its statd for SM_NOTIFY).
//
// Registration prefers rpcbind v4 SET over the local socket /run/rpcbind.sock: rpcbind learns
// our uid from the socket (owner "superuser", so nobody else can UNSET us), and v4 can also
// register udp6/tcp6. Without that socket it falls back to portmapper v2 SET over UDP to
// 127.0.0.1:111, which every portmapper speaks.
import { existsSync } from 'node:fs';
import { isIP, isIPv6 } from 'node:net';
import type { XdrReader, XdrWriter } from '../xdr';
import { RpcConnectionError, RpcError, RpcTimeoutError } from './errors';
import { callOnce, RpcClient, type RpcClientOptions } from './client';

export const PMAP_PROG = 100000;
export const PMAP_PORT = 111;
export const PMAP_VERS = 2;
export const RPCBIND_VERS4 = 4;
export const PMAPPROC = { NULL: 0, SET: 1, UNSET: 2, GETPORT: 3, DUMP: 4 } as const;
/** rpcbind v3/v4 use the same numbers for SET, UNSET and GETADDR. */
export const RPCBPROC = { NULL: 0, SET: 1, UNSET: 2, GETADDR: 3, DUMP: 4 } as const;
export const IPPROTO = { tcp: 6, udp: 17 } as const;
export const RPCBIND_SOCKET = '/run/rpcbind.sock';

export type Protocol = 'udp' | 'tcp';

export interface RpcbindEntry {
  prog: number;
  vers: number;
  protocol: Protocol;
  port: number;
}

export interface RpcbindOptions {
  mode: 'auto' | 'off';
  /** Also register udp6/tcp6 (only possible over the rpcbind socket). Default false. */
  ipv6?: boolean;
  socketPath?: string;
  /** Portmapper fallback address. Default 127.0.0.1:111. */
  host?: string;
  port?: number;
  timeoutMs?: number;
}

/** One mapping rpcbind holds. */
export interface RpcbindMapping {
  prog: number;
  vers: number;
  /** udp, tcp, udp6, tcp6, local, ... (portmapper v2 knows only udp and tcp). */
  netid: string;
  /** 0 when the address carries no port (a local/unix registration). */
  port: number;
  /** rpcbind v4's owner: "superuser", "unknown" or a uid; undefined over portmapper v2. */
  owner?: string;
}

export interface RpcbindRegistration {
  registered: boolean;
  /** How rpcbind was reached. */
  via?: 'unix' | 'udp';
  /** Why nothing (or not everything) was registered; fit for a log line. */
  reason?: string;
  /** Removes what was registered (a no-op when nothing was). Never throws. */
  unregister(): Promise<void>;
}

const writeMapping = (e: { prog: number; vers: number; protocol?: Protocol; port?: number }) => (w: XdrWriter): void => {
  w.uint(e.prog).uint(e.vers).uint(e.protocol ? IPPROTO[e.protocol] : 0).uint(e.port ?? 0);
};

const writeRpcb = (prog: number, vers: number, netid: string, addr: string) => (w: XdrWriter): void => {
  w.uint(prog).uint(vers).string(netid).string(addr).string(String(process.getuid?.() ?? 0));
};

const readBool = (r: XdrReader): boolean => r.bool();

/** An rpcbind universal address: "h1.h2.h3.h4.p1.p2" (or the IPv6 form). */
export function universalAddress(host: string, port: number): string {
  return `${host}.${port >> 8}.${port & 0xff}`;
}

const readRpcb = (r: XdrReader): RpcbindMapping => {
  const prog = r.uint();
  const vers = r.uint();
  const netid = r.string(64);
  const addr = r.string(256);
  const owner = r.string(256);
  let port = 0;
  try {
    port = portOfUniversalAddress(addr);
  } catch {
    // a unix path or an address of another family: no port
  }
  return { prog, vers, netid, port, owner };
};

/** A linked list in XDR (`*next` optional-data), as DUMP answers. */
const readList = <T>(readItem: (r: XdrReader) => T) => (r: XdrReader): T[] => {
  const out: T[] = [];
  for (let i = 0; r.bool(); i++) {
    if (i >= 65536) throw new RpcError('rpcbind DUMP: more than 65536 mappings');
    out.push(readItem(r));
  }
  return out;
};

/** Every mapping the local rpcbind holds: rpcbind v4 DUMP over its socket, else portmapper v2 DUMP over UDP. Throws RpcError when none answers. */
export async function dumpRpcbind(opts: Omit<RpcbindOptions, 'mode' | 'ipv6'> = {}): Promise<{ via: 'unix' | 'udp'; mappings: RpcbindMapping[] }> {
  const socketPath = opts.socketPath ?? RPCBIND_SOCKET;
  const timeoutMs = opts.timeoutMs ?? 2_000;
  if (existsSync(socketPath)) {
    try {
      const mappings = await callOnce({ transport: 'unix', path: socketPath, timeoutMs }, PMAP_PROG, RPCBIND_VERS4, RPCBPROC.DUMP, () => undefined, readList(readRpcb));
      return { via: 'unix', mappings };
    } catch (err) {
      if (!(err instanceof RpcError)) throw err;
      // fall back to the portmapper
    }
  }
  const udp: RpcClientOptions = { transport: 'udp', host: opts.host ?? '127.0.0.1', port: opts.port ?? PMAP_PORT, timeoutMs, retransmitMs: 250 };
  const mappings = await callOnce(udp, PMAP_PROG, PMAP_VERS, PMAPPROC.DUMP, () => undefined, readList((r) => {
    const prog = r.uint();
    const vers = r.uint();
    const prot = r.uint();
    const port = r.uint();
    return { prog, vers, netid: prot === IPPROTO.tcp ? 'tcp' : prot === IPPROTO.udp ? 'udp' : String(prot), port };
  }));
  return { via: 'udp', mappings };
}

/** Registers entries with the local rpcbind; 'auto' reports (never throws) when no rpcbind answers. */
export async function registerWithRpcbind(entries: readonly RpcbindEntry[], opts: RpcbindOptions): Promise<RpcbindRegistration> {
  const none = async (): Promise<void> => undefined;
  if (opts.mode === 'off') return { registered: false, reason: 'rpcbind registration is off', unregister: none };
  const socketPath = opts.socketPath ?? RPCBIND_SOCKET;
  const timeoutMs = opts.timeoutMs ?? 2_000;
  const versions = [...new Map(entries.map((e) => [`${e.prog}/${e.vers}`, e])).values()];
  const failures: string[] = [];

  if (existsSync(socketPath)) {
    const client = new RpcClient({ transport: 'unix', path: socketPath, timeoutMs });
    const set: { prog: number; vers: number; netid: string; port: number }[] = [];
    try {
      // Clear stale registrations of ours first: rpcbind refuses SET over an existing mapping.
      for (const v of versions) await client.call(PMAP_PROG, RPCBIND_VERS4, RPCBPROC.UNSET, writeRpcb(v.prog, v.vers, '', ''), readBool);
      for (const e of entries) {
        const families: [string, string][] = [[e.protocol, universalAddress('0.0.0.0', e.port)]];
        if (opts.ipv6) families.push([`${e.protocol}6`, universalAddress('::', e.port)]);
        for (const [netid, addr] of families) {
          const ok = await client.call(PMAP_PROG, RPCBIND_VERS4, RPCBPROC.SET, writeRpcb(e.prog, e.vers, netid, addr), readBool);
          if (ok) set.push({ prog: e.prog, vers: e.vers, netid, port: e.port });
          else failures.push(`SET ${e.prog}/${e.vers}/${netid} refused`);
        }
      }
      client.close();
      return {
        registered: failures.length === 0,
        via: 'unix',
        ...(failures.length ? { reason: failures.join('; ') } : {}),
        unregister: async () => {
          const c = new RpcClient({ transport: 'unix', path: socketPath, timeoutMs });
          try {
            // Only what still points at us: another service may have registered since.
            const now = await c.call(PMAP_PROG, RPCBIND_VERS4, RPCBPROC.DUMP, () => undefined, readList(readRpcb));
            const ours = (s: { prog: number; vers: number; netid: string; port: number }) => now.some((m) => m.prog === s.prog && m.vers === s.vers && m.netid === s.netid && m.port === s.port);
            for (const s of set.filter(ours)) await c.call(PMAP_PROG, RPCBIND_VERS4, RPCBPROC.UNSET, writeRpcb(s.prog, s.vers, s.netid, ''), readBool);
          } catch {
            // rpcbind went away: nothing left to unregister from.
          } finally {
            c.close();
          }
        },
      };
    } catch (err) {
      client.close();
      failures.push(`${socketPath}: ${(err as Error).message}`);
    }
  }

  const udp: RpcClientOptions = { transport: 'udp', host: opts.host ?? '127.0.0.1', port: opts.port ?? PMAP_PORT, timeoutMs, retransmitMs: 250 };
  const client = new RpcClient(udp);
  try {
    for (const v of versions) await client.call(PMAP_PROG, PMAP_VERS, PMAPPROC.UNSET, writeMapping(v), readBool);
    const set: RpcbindEntry[] = [];
    for (const e of entries) {
      if (await client.call(PMAP_PROG, PMAP_VERS, PMAPPROC.SET, writeMapping(e), readBool)) set.push(e);
      else failures.push(`SET ${e.prog}/${e.vers}/${e.protocol} refused`);
    }
    return {
      registered: set.length === entries.length,
      via: 'udp',
      ...(failures.length ? { reason: failures.join('; ') } : {}),
      unregister: async () => {
        const c = new RpcClient(udp);
        try {
          // Portmapper v2 UNSET removes a version on every protocol: only when all of it still points at us.
          const now = await c.call(PMAP_PROG, PMAP_VERS, PMAPPROC.DUMP, () => undefined, readList((r) => ({ prog: r.uint(), vers: r.uint(), prot: r.uint(), port: r.uint() })));
          const ours = (v: RpcbindEntry) => now.filter((m) => m.prog === v.prog && m.vers === v.vers).every((m) => set.some((e) => e.prog === m.prog && e.vers === m.vers && IPPROTO[e.protocol] === m.prot && e.port === m.port));
          for (const v of versions.filter(ours)) await c.call(PMAP_PROG, PMAP_VERS, PMAPPROC.UNSET, writeMapping(v), readBool);
        } catch {
          // rpcbind went away: nothing left to unregister from.
        } finally {
          c.close();
        }
      },
    };
  } catch (err) {
    if (!(err instanceof RpcError)) throw err;
    const what = err instanceof RpcTimeoutError || err instanceof RpcConnectionError ? 'no rpcbind answered' : 'rpcbind failed';
    failures.push(`${what} at ${udp.host}:${udp.port}: ${err.message}`);
    return { registered: false, reason: failures.join('; '), unregister: none };
  } finally {
    client.close();
  }
}

export interface GetPortOptions {
  /** Local address to ask from (e.g. the VIP the peer knows us by). */
  source?: string;
  /** The peer's portmapper port. Default 111. */
  port?: number;
  /** How to reach the portmapper. Default udp. */
  transport?: Protocol;
  timeoutMs?: number;
}

/** The port in an rpcbind universal address ("h1.h2.h3.h4.p1.p2", or IPv6 text then ".p1.p2"); 0 for "". */
export function portOfUniversalAddress(uaddr: string): number {
  if (uaddr === '') return 0;
  const m = /^(.+)\.(\d{1,3})\.(\d{1,3})$/.exec(uaddr);
  if (!m || isIP(m[1]!) === 0 || Number(m[2]) > 255 || Number(m[3]) > 255) throw new RpcError(`not a universal address: ${JSON.stringify(uaddr.slice(0, 80))}`);
  return Number(m[2]) * 256 + Number(m[3]);
}

/**
 * The port of (prog, vers, protocol) on host; 0 means the program is not registered. IPv4 peers
 * are asked with portmapper v2 GETPORT, which every portmapper speaks; IPv6 peers with rpcbind v4
 * GETADDR for the udp6/tcp6 netid, since portmapper v2 only knows IPv4 registrations. Note
 * rpcbind's GETPORT answers with another version's port when only the asked version is missing:
 * the service itself then replies PROG_MISMATCH.
 */
export async function getPort(host: string, prog: number, vers: number, protocol: Protocol, opts: GetPortOptions = {}): Promise<number> {
  const target: RpcClientOptions = {
    transport: opts.transport ?? 'udp',
    host,
    port: opts.port ?? PMAP_PORT,
    timeoutMs: opts.timeoutMs ?? 5_000,
    ...(opts.source !== undefined ? { source: opts.source } : {}),
  };
  const q = portQuery(host, prog, vers, protocol);
  return callOnce(target, PMAP_PROG, q.vers, q.proc, q.encodeArgs, q.decodeResult);
}

/** The call to a peer's rpcbind (program PMAP_PROG) that answers a port, for callers with a transport of their own. */
export interface PortQuery {
  vers: number;
  proc: number;
  encodeArgs: (w: XdrWriter) => void;
  decodeResult: (r: XdrReader) => number;
}

/**
 * How to ask a host's rpcbind for (prog, vers, protocol): portmapper v2 GETPORT, or for an IPv6
 * host rpcbind v4 GETADDR of udp6/tcp6 (portmapper v2 knows only IPv4 registrations).
 */
export function portQuery(host: string, prog: number, vers: number, protocol: Protocol): PortQuery {
  if (isIPv6(host)) {
    return { vers: RPCBIND_VERS4, proc: RPCBPROC.GETADDR, encodeArgs: writeRpcb(prog, vers, `${protocol}6`, ''), decodeResult: (r) => portOfUniversalAddress(r.string(256)) };
  }
  return { vers: PMAP_VERS, proc: PMAPPROC.GETPORT, encodeArgs: writeMapping({ prog, vers, protocol }), decodeResult: (r) => r.uint() };
}
