// `lockdrop import-statd`: rpc.statd's records (sm/, sm.bak/ and state under /var/lib/nfs) become
// one server address's records in lockdropd's state directory, so that the clients the kernel's
// lockd had are told by lockdropd when that address arrives. Done while no lockdropd of this
// host runs on the state directory: its instance lock is held for the import.
import { lookup } from 'node:dns/promises';
import { acquireInstanceLock } from '../daemon/lockfile';
import { Nsm, NsmStore, type SkippedFile } from '../nsm';
import { normaliseAddress } from '../net';

export interface ImportReport {
  address: string;
  from: string;
  stateDir: string;
  /** Hosts imported (sm/ and sm.bak/ together). */
  records: number;
  /** rpc.statd's state number, kept when ahead of the address's own. */
  state: number | null;
  skipped: SkippedFile[];
}

/** A host name rpc.statd recorded, to an address (getaddrinfo: /etc/hosts, then DNS). */
async function resolve(hostname: string): Promise<string | undefined> {
  try {
    return (await lookup(hostname)).address;
  } catch {
    return undefined;
  }
}

export async function importStatd(opts: { from: string; address: string; stateDir: string }): Promise<ImportReport> {
  const address = normaliseAddress(opts.address);
  const lock = acquireInstanceLock(opts.stateDir);
  const nsm = new Nsm({ store: new NsmStore(opts.stateDir), resolve });
  try {
    const r = await nsm.importNfsUtils(opts.from, address);
    return { address, from: opts.from, stateDir: opts.stateDir, records: r.records, state: r.state ?? null, skipped: r.skipped };
  } finally {
    await nsm.close();
    lock.release();
  }
}
