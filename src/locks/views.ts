// Views of the table for the control socket, metrics and tests: held locks through the narrowest
// index a filter allows, queued requests, share reservations, counts. Each is copied before it is
// yielded, so a consumer may change the table while it iterates.
import type { Pos } from './range';
import { toWire } from './range';
import { isAwaitingTag, isExclTag } from './state';
import type { LockState } from './state';
import type { HeldLock, LockRequest, ShareRequest } from './types';

export interface LockFilter {
  serverAddress?: string;
  host?: string;
  exportId?: string;
}

export interface LockTableStats {
  locks: number;
  shares: number;
  blocked: number;
  /** Requests refused or queued since the table began because they would take a kept journal entry. */
  kept: number;
  byAddress: Map<string, { locks: number; hosts: number }>;
}

/** A held lock as a view saw it: its records may change or be reused before it is yielded. */
interface LockSnapshot {
  file: string;
  host: string;
  svid: number;
  oh: string;
  start: Pos;
  end: Pos;
  tag: number;
  address: string;
  exportId: string | undefined;
}

export function* heldLocks(st: LockState, filter: LockFilter): Iterable<HeldLock> {
  const { L, F, H } = st;
  const { serverAddress, host, exportId } = filter;
  const addr = serverAddress === undefined ? undefined : st.addrs.get(serverAddress);
  const h = host === undefined ? undefined : st.hosts.get(host);
  const exp = exportId === undefined ? undefined : st.exports.get(exportId);
  if ((serverAddress !== undefined && !addr) || (host !== undefined && !h) || (exportId !== undefined && !exp)) return;
  const keep = (l: number): boolean => {
    const hd = L.holder[l];
    return (!addr || H.addr[hd] === addr.id) && (!h || st.O.host[H.owner[hd]] === h.id) && (!exp || F.exp[L.file[l]] === exp.id);
  };
  // Collected from the narrowest index and copied before yielding, so a consumer may change the table.
  const found: LockSnapshot[] = [];
  const take = (l: number): void => {
    if (keep(l)) found.push(snapshot(st, l));
  };
  const fromHolders = (first: number): void => {
    for (let hd = first; hd !== 0; hd = H.aNext[hd]) for (let l = H.head[hd]; l !== 0; l = L.hNext[l]) take(l);
  };
  if (addr) {
    for (const at of addr.hosts.values()) fromHolders(at.head);
  } else if (h) {
    for (const a of st.addrs.values()) fromHolders(a.hosts.get(h.id)?.head ?? 0);
  } else if (exp) {
    for (let f = exp.head; f !== 0; f = F.xNext[f]) for (let l = F.head[f]; l !== 0; l = L.fNext[l]) take(l);
  } else {
    for (const f of F.ids()) for (let l = F.head[f]; l !== 0; l = L.fNext[l]) take(l);
  }
  for (const s of found) {
    const { offset, length } = toWire(s.start, s.end);
    yield {
      fh: Buffer.from(s.file, 'latin1'),
      owner: { host: s.host, svid: s.svid, oh: Buffer.from(s.oh, 'latin1') },
      exclusive: isExclTag(s.tag),
      offset,
      length,
      serverAddress: s.address,
      exportId: s.exportId,
      since: st.sinceOf(s.tag),
      ...(isAwaitingTag(s.tag) ? { awaitingReclaim: true as const } : {}),
    };
  }
}

function snapshot(st: LockState, l: number): LockSnapshot {
  const { L, O, H } = st;
  const o = H.owner[L.holder[l]];
  return {
    file: st.F.key[L.file[l]],
    host: st.hostOf(o).key,
    svid: O.svid[o],
    oh: O.oh[o],
    start: L.start(l),
    end: L.end(l),
    tag: L.tag[l],
    address: st.addrIds.get(H.addr[L.holder[l]]).address,
    exportId: st.exportIdOf(L.file[l]),
  };
}

/** Host keys holding a lock, share or queued block through this server address. */
export function hostsAt(st: LockState, serverAddress: string): ReadonlySet<string> {
  const out = new Set<string>();
  for (const at of st.addrs.get(serverAddress)?.hosts.values() ?? []) out.add(at.host.key);
  return out;
}

export function stats(st: LockState): LockTableStats {
  const byAddress = new Map<string, { locks: number; hosts: number }>();
  for (const a of st.addrs.values()) byAddress.set(a.address, { locks: a.count, hosts: a.hosts.size });
  return { locks: st.nLocks, shares: st.nShares, blocked: st.nBlocked, kept: st.nKept, byAddress };
}

/** Queued blocks in arrival order (per file). */
export function blockedRequests(st: LockState): { request: LockRequest; waiter: unknown }[] {
  const all: { request: LockRequest; waiter: unknown }[] = [];
  for (const [f, x] of st.extras) {
    for (const b of x.queue.toArray()) {
      const { offset, length } = toWire(b.start, b.end);
      all.push({
        request: { fh: Buffer.from(st.F.key[f], 'latin1'), owner: st.publicOwner(b.owner), exclusive: b.exclusive, offset, length, serverAddress: b.addr.address },
        waiter: b.waiter,
      });
    }
  }
  return all;
}

export function shareReservations(st: LockState): ShareRequest[] {
  const all: ShareRequest[] = [];
  for (const [f, x] of st.extras) {
    for (const s of x.shares) {
      all.push({
        fh: Buffer.from(st.F.key[f], 'latin1'),
        owner: { host: s.host.key, oh: Buffer.from(s.oh, 'latin1') },
        mode: s.mode as ShareRequest['mode'],
        access: s.access as ShareRequest['access'],
        serverAddress: s.addr.address,
      });
    }
  }
  return all;
}
