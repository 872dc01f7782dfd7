// `lockdrop import-statd`: rpc.statd's records (sm/, sm.bak/ and state under /var/lib/nfs) become
// one server address's records in lockdropd's state directory, so that the clients the kernel's
// lockd had are told by lockdropd when that address arrives. Done while no lockdropd of this
// host runs on the state directory: its instance lock is held for the import.
import { lookup } from 'node:dns/promises';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
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

/** Throws when `from` is no rpc.statd state directory: there is nothing to import from it. */
function checkSource(from: string): void {
  let isDir = false;
  try {
    isDir = statSync(from).isDirectory();
  } catch (err) {
    throw new Error(`nothing to import: ${from}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (err as Error).message}`);
  }
  if (!isDir) throw new Error(`nothing to import: ${from} is not a directory`);
  if (!['sm', 'sm.bak', 'state'].some((f) => existsSync(path.join(from, f)))) throw new Error(`nothing to import: ${from} holds no sm/, sm.bak/ or state of rpc.statd`);
}

export async function importStatd(opts: { from: string; address: string; stateDir: string }): Promise<ImportReport> {
  checkSource(opts.from);
  const address = normaliseAddress(opts.address);
  mkdirSync(opts.stateDir, { recursive: true, mode: 0o755 });
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
