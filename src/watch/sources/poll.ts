// The poll source: a snapshot of the local addresses every N seconds, diffed against the last
// one. It heals whatever the event sources missed and is the only source where rtnetlink is
// unavailable.
//
// The snapshot is os.networkInterfaces() (getifaddrs through libuv), not systeminformation's
// networkInterfaces(): that one reports a single IPv4 and a single IPv6 address per interface
// (its ip4/ip6 fields), so it cannot see the secondary addresses floating IPs usually are, and
// it runs external commands on each call. libuv lists only interfaces that are up and running,
// which is also what the netlink source counts as local. IPv6 flags (tentative, dadfailed) and
// interface indexes come from /proc/net/if_inet6 and /proc/net/igmp, which (unlike /sys) follow
// the reader's network namespace.
import { networkInterfaces } from 'node:os';
import { readFile } from 'node:fs/promises';
import { EMPTY, Observable, catchError, exhaustMap, from, mergeMap, timer, type SchedulerLike } from 'rxjs';
import { formatAddress, normaliseAddress, parseAddress } from '../../net';
import { AF_INET, AF_INET6, type AddressMessage } from '../codec/netlink';
import { AddressTable } from '../table';
import { nowMs, type SourceItem } from '../types';

/** One local address in a snapshot, in the shape of an RTM_NEWADDR. */
export type SnapshotAddress = Pick<AddressMessage, 'family' | 'prefixLen' | 'flags' | 'ifindex' | 'local' | 'label'>;

const readOptional = (path: string): Promise<string> => readFile(path, 'utf8').catch(() => '');

/** /proc/net/if_inet6 lines: address, ifindex, prefix length, scope, flags, name (hex fields). */
export function parseIfInet6(text: string): Map<string, { ifindex: number; flags: number; prefixLen: number }> {
  const out = new Map<string, { ifindex: number; flags: number; prefixLen: number }>();
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 6 || f[0].length !== 32) continue;
    const address = formatAddress(Buffer.from(f[0], 'hex'));
    out.set(`${address}%${f[5]}`, { ifindex: parseInt(f[1], 16), prefixLen: parseInt(f[2], 16), flags: parseInt(f[4], 16) });
  }
  return out;
}

/** /proc/net/igmp: "Idx Device : ..." lines, one per interface with IPv4. */
export function parseIgmp(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^(\d+)\s+(\S+)\s*:/gm)) out.set(m[2], Number(m[1]));
  return out;
}

const prefixOf = (netmask: string): number => parseAddress(netmask).reduce((n, b) => n + ((b >>> 0).toString(2).match(/1/g)?.length ?? 0), 0);

/** The local addresses now (the edge: reads the OS). */
export async function readLocalAddresses(): Promise<SnapshotAddress[]> {
  const [inet6, igmp] = await Promise.all([readOptional('/proc/net/if_inet6'), readOptional('/proc/net/igmp')]);
  const v6 = parseIfInet6(inet6);
  const v4Index = parseIgmp(igmp);
  const out: SnapshotAddress[] = [];
  for (const [name, list] of Object.entries(networkInterfaces())) {
    const device = name.split(':')[0]; // IPv4 labels: eth0:1
    for (const a of list ?? []) {
      const local = normaliseAddress(a.address);
      if (a.family === 'IPv6') {
        const info = v6.get(`${local}%${device}`);
        out.push({ family: AF_INET6, local, prefixLen: info?.prefixLen ?? prefixOf(a.netmask), flags: info?.flags ?? 0, ifindex: info?.ifindex ?? a.scopeid ?? 0, label: device });
      } else {
        out.push({ family: AF_INET, local, prefixLen: prefixOf(a.netmask), flags: 0, ifindex: v4Index.get(device) ?? 0, label: name });
      }
    }
  }
  return out;
}

export interface PollSourceOptions {
  intervalMs?: number;
  scheduler?: SchedulerLike;
  /** Where snapshots come from (tests inject one). */
  snapshot?: () => Promise<SnapshotAddress[]>;
  now?: () => number;
}

/** Emits the first snapshot as 'added', then every difference. A failed snapshot is skipped. */
export function pollSource(opts: PollSourceOptions = {}): Observable<SourceItem> {
  const snapshot = opts.snapshot ?? readLocalAddresses;
  const now = opts.now ?? nowMs;
  return new Observable<SourceItem>((subscriber) => {
    const table = new AddressTable('poll');
    return timer(0, opts.intervalMs ?? 5000, opts.scheduler)
      .pipe(
        // A snapshot is as old as its start: the pipeline uses that time to ignore stale ones.
        exhaustMap(() => {
          const at = now();
          return from(snapshot()).pipe(
            mergeMap((addrs) => table.replace({ addresses: addrs.map((a) => ({ kind: 'address', op: 'new', scope: 0, ...a }) as const), families: [4, 6] }, at)),
            catchError(() => EMPTY),
          );
        }),
      )
      .subscribe(subscriber);
  });
}
