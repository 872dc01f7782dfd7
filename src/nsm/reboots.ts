// SM_NOTIFY in: a client says it rebooted. Matched as nfs-utils' statd does (the name
// case-insensitively, or an address name), but believed only from the host's recorded address and
// only with a changed state; then the daemon is told to drop that host's locks (nsm never imports
// nlm or locks: it turns `HostRebooted` into `dropByHost(hostKey(monName, address))`), and each RPC
// monitor gets its status callback.
import type { Logger } from 'pino';
import { isAddress, normaliseAddress } from '../net';
import type { StatChge } from './protocol';
import type { MonitorList } from './monitor-list';
import type { NsmSender } from './sender';
import { recordKey, type HostRecord } from './store';

/** A monitored client restarted: the daemon releases `hostKey(monName, address)`'s locks and shares. */
export interface HostRebooted {
  monName: string;
  address: string;
  /** The host's new NSM state number. */
  state: number;
  /** The identities the host was monitored through. */
  serverAddresses: string[];
}

/** What became of one SM_NOTIFY received. */
export type NotifyVerdict = 'accepted' | 'unknown-host' | 'wrong-address' | 'stale-state';

/** An address spelling of `name` equal to `address` (a host may be named by its address). */
const namesAddress = (name: string, address: string): boolean => isAddress(name) && normaliseAddress(name) === address;

/**
 * Whether an SM_NOTIFY's mon_name, sent from `sender`, is the recorded host, as nfs-utils'
 * sm_notify_1_svc matches (statd_matchhostname on the mon_name and on the sender's address):
 * the names equal ignoring case, or the mon_name is the host's address, or the host was recorded
 * under its address and the notice comes from there. Only a notice from the recorded address is
 * believed: a name alone releases nothing (the spoof nfs-utils' DNS match cannot rule out).
 */
export function notifyMatches(record: Pick<HostRecord, 'monName' | 'address'>, monName: string, sender: string): boolean {
  return record.address === sender && (record.monName.toLowerCase() === monName.toLowerCase() || namesAddress(monName, sender) || namesAddress(record.monName, sender));
}

/** The names a notice could mean, from anywhere: for telling a spoof ('wrong-address') from an unknown host. */
const notifyNames = (record: Pick<HostRecord, 'monName' | 'address'>, monName: string): boolean =>
  record.monName.toLowerCase() === monName.toLowerCase() || namesAddress(monName, record.address);

export interface RebootNoticeDeps {
  list: MonitorList;
  rebooted(h: HostRebooted): void;
  sender: NsmSender | undefined;
  log: Logger | undefined;
}

/** A host says it rebooted. `from` is the datagram's source address. */
export async function receiveRebootNotice(deps: RebootNoticeDeps, args: StatChge, from: string): Promise<NotifyVerdict> {
  const { list, log } = deps;
  const peer = normaliseAddress(from);
  const named: HostRecord[] = [];
  const ours: HostRecord[] = [];
  for (const e of list.entriesLoaded()) {
    for (const r of e.records.values()) {
      if (notifyMatches(r, args.monName, peer)) ours.push(r);
      else if (notifyNames(r, args.monName)) named.push(r);
    }
  }
  const changed = ours.filter((r) => r.state !== args.state);
  let verdict: NotifyVerdict;
  if (ours.length === 0) verdict = named.length === 0 ? 'unknown-host' : 'wrong-address';
  else if (changed.length === 0) verdict = 'stale-state';
  else verdict = 'accepted';
  if (verdict !== 'accepted') {
    log?.warn({ monName: args.monName, from: peer, state: args.state, recorded: [...ours, ...named].map((r) => r.address), verdict }, 'nsm: SM_NOTIFY ignored');
    return verdict;
  }
  // One event per host as the lock manager keyed it (the record's own name and address).
  const hosts = new Map<string, HostRecord[]>();
  for (const r of changed) {
    r.state = args.state;
    const k = recordKey(r.monName, r.address);
    hosts.set(k, [...(hosts.get(k) ?? []), r]);
    // From now on a monitor() of the host records it again (after rebootHandled below).
    list.loaded(r.serverAddress)?.localVia.delete(k);
  }
  for (const [, rs] of hosts) {
    const { monName, address } = rs[0]!;
    const serverAddresses = [...new Set(rs.map((r) => r.serverAddress))];
    log?.info({ monName, notifiedAs: args.monName, client: address, state: args.state, addresses: serverAddresses }, 'nsm: host rebooted');
    deps.rebooted({ monName, address, state: args.state, serverAddresses });
  }
  for (const r of changed) {
    for (const cb of r.callbacks) {
      deps.sender?.statusCallback(cb, { monName: r.monName, state: args.state, priv: Buffer.from(cb.priv, 'hex') }).catch((err: Error) =>
        log?.warn({ err, callback: cb, monName: r.monName }, 'nsm: status callback failed'));
    }
  }
  // The sender retransmits until we answer: answer once the records are durable.
  await Promise.all(changed.map((r) => list.rebootHandled(r)));
  return verdict;
}
