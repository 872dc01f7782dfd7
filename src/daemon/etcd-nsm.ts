// NSM's records in etcd, beside the lock journal: per floating address its state number and one
// record per monitored host, so the node that takes the address over notifies its clients with
// no shared directory. The node's own identity (loopback) stays in the local state directory.
//
//   <prefix>/nsm/<address>/state          "<n>\n"
//   <prefix>/nsm/<address>/hosts/<name>   the record's JSON (the file's name and content of NsmStore)
//
// A write resolves once etcd's quorum has it: as durable as NsmStore's fsync, on every node.
import { isLoopback } from '../net';
import { parseHostRecord, parseStateNumber, recordFileName, type HostRecord, type LoadedAddress, type NsmRecords, type NsmStore } from '../nsm';
import type { EtcdStore } from '../store';

export class EtcdNsmRecords implements NsmRecords {
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly etcd: EtcdStore, private readonly local: NsmStore) {}

  async load(serverAddress: string): Promise<LoadedAddress> {
    if (isLoopback(serverAddress)) return this.local.load(serverAddress);
    const base = `nsm/${serverAddress}/`;
    const kvs = await this.etcd.readRecords(base);
    const out: LoadedAddress = { serverAddress, state: undefined, records: [], skipped: [] };
    for (const [key, value] of kvs) {
      const where = `etcd ${base}${key}`;
      if (key === 'state') {
        out.state = parseStateNumber(value.toString());
        if (out.state === undefined) out.skipped.push({ path: where, reason: 'corrupt state number' });
        continue;
      }
      if (!key.startsWith('hosts/')) continue;
      const r = parseHostRecord(value.toString());
      if (typeof r === 'string') out.skipped.push({ path: where, reason: r });
      else if (r.serverAddress !== serverAddress) out.skipped.push({ path: where, reason: `record names server address ${r.serverAddress}` });
      else out.records.push(r);
    }
    return out;
  }

  put(record: HostRecord): Promise<void> {
    if (isLoopback(record.serverAddress)) return this.local.put(record);
    return this.track(this.etcd.writeRecord(hostKey(record), Buffer.from(`${JSON.stringify(record)}\n`)));
  }

  remove(record: Pick<HostRecord, 'monName' | 'address' | 'serverAddress'>): Promise<void> {
    if (isLoopback(record.serverAddress)) return this.local.remove(record);
    return this.track(this.etcd.writeRecord(hostKey(record), null));
  }

  writeState(serverAddress: string, state: number): Promise<void> {
    if (isLoopback(serverAddress)) return this.local.writeState(serverAddress, state);
    if (parseStateNumber(String(state)) === undefined) throw new RangeError(`NSM state ${state} is not a 32-bit integer`);
    return this.track(this.etcd.writeRecord(`nsm/${serverAddress}/state`, Buffer.from(`${state}\n`)));
  }

  async flush(): Promise<void> {
    await this.local.flush();
    await Promise.allSettled([...this.inFlight]);
  }

  private track(p: Promise<void>): Promise<void> {
    this.inFlight.add(p);
    const done = (): void => void this.inFlight.delete(p);
    p.then(done, done);
    return p;
  }
}

const hostKey = (r: Pick<HostRecord, 'monName' | 'address' | 'serverAddress'>): string => `nsm/${r.serverAddress}/hosts/${recordFileName(r.monName, r.address)}`;
