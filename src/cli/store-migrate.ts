// `lockdrop store migrate --from DIR --to etcd` (and `--from etcd --to DIR`): a stopped cluster's
// state moves between the shared state directory and etcd — per floating address its lock
// journal (the live entries), NSM's state number and monitored hosts. Through the same ports the
// daemon uses (ClusterStore, NsmRecords), so what lands is what lockdropd reads. Refused while
// any lockdropd is live on the source or the target (a node key or a holder lease), and for an
// address the target already has state for: a migration never merges two clusters' states.
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { EtcdNsmRecords } from '../daemon/etcd-nsm';
import { isAddress, isLoopback, normaliseAddress } from '../net';
import { NsmStore, type NsmRecords } from '../nsm';
import { DirectoryStore, EtcdStore, type ClusterStore, type EtcdStoreOptions } from '../store';

export interface MigrateOptions {
  from: 'etcd' | string;
  to: 'etcd' | string;
  etcd: Pick<EtcdStoreOptions, 'endpoints' | 'prefix' | 'tls'>;
}

export interface MigrateReport {
  from: string;
  to: string;
  addresses: Array<{ address: string; entries: number; hosts: number; state: number | null }>;
}

const NODE = 'lockdrop-store-migrate';

interface Side {
  name: string;
  store: ClusterStore;
  nsm: NsmRecords;
  /** Addresses with NSM records or a journal. */
  addresses(): Promise<string[]>;
  /** Why this side is in use by a running cluster, if it is. */
  busy(): Promise<string | undefined>;
  close(): Promise<void>;
}

async function directorySide(dir: string): Promise<Side> {
  if (!existsSync(dir)) throw new Error(`${dir}: no such state directory`);
  const store = await DirectoryStore.open({ stateDir: dir, node: NODE, watch: false, log: pino({ level: 'silent' }) });
  const folders = (): string[] => readdirSync(dir).filter((n) => isAddress(n) && normaliseAddress(n) === n && !isLoopback(n)).sort();
  return {
    name: dir,
    store,
    nsm: new NsmStore(dir, { host: NODE }),
    addresses: async () => folders(),
    // A lockdropd removes its holder files when it stops cleanly; one left means a node runs (or died: remove it by hand).
    busy: async () => {
      const held = folders().filter((a) => existsSync(path.join(dir, a, 'holder')));
      return held.length ? `${dir}: ${held.join(', ')} ${held.length === 1 ? 'has a holder lease' : 'have holder leases'} (a lockdropd runs, or died: stop it, or remove <address>/holder)` : undefined;
    },
    close: () => store.close(),
  };
}

async function etcdSide(o: MigrateOptions['etcd']): Promise<Side> {
  const store = await EtcdStore.open({ ...o, node: NODE, log: pino({ level: 'silent' }) });
  const journals = new Set<string>();
  store.changes$.subscribe((c) => c.records.length > 0 && journals.add(c.address)).unsubscribe();
  return {
    name: `etcd ${o.prefix}`,
    store,
    nsm: new EtcdNsmRecords(store, new NsmStore('/nonexistent', { host: NODE })),
    addresses: async () => {
      const nsm = (await store.readRecords('nsm/')).map(([k]) => k.slice(0, k.indexOf('/')));
      return [...new Set([...journals, ...nsm])].filter((a) => isAddress(a) && normaliseAddress(a) === a).sort();
    },
    busy: async () => {
      const live = store.liveNodes();
      if (live.length) return `etcd ${o.prefix}: lockdropd live on ${live.join(', ')}`;
      const held = (await store.readRecords('holder/')).map(([a]) => a);
      return held.length ? `etcd ${o.prefix}: holder leases of ${held.join(', ')}` : undefined;
    },
    close: () => store.close(),
  };
}

export async function migrateStore(opts: MigrateOptions): Promise<MigrateReport> {
  if ((opts.from === 'etcd') === (opts.to === 'etcd')) throw new Error('one side is etcd and the other a state directory: --from DIR --to etcd, or --from etcd --to DIR');
  const open = (s: string): Promise<Side> => (s === 'etcd' ? etcdSide(opts.etcd) : directorySide(s));
  const from = await open(opts.from);
  let to: Side | undefined;
  try {
    to = await open(opts.to);
    for (const side of [from, to]) {
      const why = await side.busy();
      if (why) throw new Error(`the cluster is not stopped: ${why}`);
    }
    const addresses = await from.addresses();
    const there = new Set(await to.addresses());
    const clash = addresses.filter((a) => there.has(a));
    if (clash.length) throw new Error(`${to.name} already has state for ${clash.join(', ')}: not merged (remove it there first)`);
    const report: MigrateReport = { from: from.name, to: to.name, addresses: [] };
    for (const address of addresses) {
      const entries = await from.store.takeOver(address);
      const nsm = await from.nsm.load(address);
      if (nsm.skipped.length) throw new Error(`${from.name}: unreadable NSM records of ${address}: ${nsm.skipped.map((s) => `${s.path} (${s.reason})`).join(', ')}`);
      await to.store.takeOver(address);
      if (entries.size) to.store.append(address, [...entries].map(([key, value]) => ({ key, value })));
      await to.store.commit();
      await Promise.all(nsm.records.map((r) => to!.nsm.put(r)));
      if (nsm.state !== undefined) await to.nsm.writeState(address, nsm.state);
      await to.nsm.flush();
      await to.store.release(address);
      await from.store.release(address);
      report.addresses.push({ address, entries: entries.size, hosts: nsm.records.length, state: nsm.state ?? null });
    }
    return report;
  } finally {
    await to?.close();
    await from.close();
  }
}
