// The durable side of NSM: per server address, its state number and one record per monitored host.
//
//   <state-dir>/<server address>/state          "<n>\n", the address's NSM state number
//   <state-dir>/<server address>/hosts/<file>   one JSON record per monitored host
//   <state-dir>/node-<host name>/…              the node's own identity (loopback, NODE_IDENTITY):
//                                               per host, as the state directory may be shared
//
// Every write is atomic and durable: temp file (named for its writer: nodes sharing the directory
// never write the same one), fsync, rename, fsync of the directory. Writes that
// arrive while a commit is under way wait for the next one, which fsyncs each directory once for
// the whole batch (group commit): a burst of SM_MON costs one directory fsync, not one per host.
// A caller's promise resolves only once its record is durable.
import { createHash } from 'node:crypto';
import fsSync, { promises as fs } from 'node:fs';
import { hostname } from 'node:os';
import { promisify } from 'node:util';
import path from 'node:path';
import { z } from 'zod';
import type { Logger } from 'pino';
import { isAddress, isLoopback } from '../net';
import { SM_MAXSTRLEN, SM_PRIV_SIZE } from './protocol';

const fdatasync = promisify(fsSync.fdatasync);

/** An RPC monitor's callback (SM_MON's my_id and priv), called when the host reboots. */
export interface MonitorCallback {
  myName: string;
  myProg: number;
  myVers: number;
  myProc: number;
  /** SM_PRIV_SIZE bytes as hex. */
  priv: string;
  /** Where the SM_MON came from: the callback goes to this address (its rpcbind finds my_prog). */
  callbackAddress: string;
}

export interface HostRecord {
  monName: string;
  /** The host's (normalised) address: SM_NOTIFY is accepted only from here. */
  address: string;
  /** The local address the host was monitored through. */
  serverAddress: string;
  /** The host's last known NSM state, learned from its SM_NOTIFY. */
  state?: number;
  /** Monitored by the in-process lock manager (HostMonitor). */
  local: boolean;
  callbacks: MonitorCallback[];
  /** ms since epoch when first recorded. */
  since: number;
}

export interface SkippedFile {
  path: string;
  reason: string;
}

export interface LoadedAddress {
  serverAddress: string;
  /** undefined when the address has no state file yet. */
  state: number | undefined;
  records: HostRecord[];
  /** Torn, empty or corrupt files, reported and left in place. */
  skipped: SkippedFile[];
}

const PRIV = new RegExp(`^[0-9a-f]{${SM_PRIV_SIZE * 2}}$`);
const name = z.string().min(1).max(SM_MAXSTRLEN);
const address = z.string().refine(isAddress, 'not an IP address');
const int32 = z.number().int().min(-0x80000000).max(0x7fffffff);
const recordSchema = z.object({
  monName: name,
  address,
  serverAddress: address,
  state: int32.optional(),
  local: z.boolean(),
  callbacks: z.array(z.object({
    myName: z.string().max(SM_MAXSTRLEN),
    myProg: int32,
    myVers: int32,
    myProc: int32,
    priv: z.string().regex(PRIV),
    callbackAddress: address,
  }).strict()),
  since: z.number(),
}).strict();

export const recordKey = (monName: string, address: string): string => `${monName}@${address}`;

/** What NSM asks of its durable records: the state directory (NsmStore) or another store (etcd). */
export type NsmRecords = Pick<NsmStore, 'load' | 'put' | 'remove' | 'writeState' | 'flush'>;

/** A record's JSON as written, checked: the record, or why it is refused. */
export function parseHostRecord(text: string): HostRecord | string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return 'torn or corrupt record (not JSON)';
  }
  // 10k records load on an address's arrival: a record as written passes a plain check; only one
  // that fails it meets the schema, which says why (the check is never looser than the schema).
  if (isHostRecord(parsed)) return parsed;
  const v = recordSchema.safeParse(parsed);
  return v.success ? v.data : `invalid record: ${v.error.issues[0]?.path.join('.')} ${v.error.issues[0]?.message}`;
}

const RECORD_KEYS = new Set(Object.keys(recordSchema.shape));
const CALLBACK_KEYS = new Set(Object.keys(recordSchema.shape.callbacks.element.shape));
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const hasOnly = (o: Record<string, unknown>, keys: Set<string>): boolean => Object.keys(o).every((k) => keys.has(k));
const isInt32 = (n: unknown): boolean => Number.isInteger(n) && (n as number) >= -0x80000000 && (n as number) <= 0x7fffffff;
const isText = (s: unknown, min: number): s is string => typeof s === 'string' && s.length >= min && s.length <= SM_MAXSTRLEN;

/** recordSchema's rules, written out: the same record passes or the schema says why not. */
function isHostRecord(v: unknown): v is HostRecord {
  if (!isObject(v) || !hasOnly(v, RECORD_KEYS)) return false;
  if (!isText(v.monName, 1) || typeof v.address !== 'string' || !isAddress(v.address) || typeof v.serverAddress !== 'string' || !isAddress(v.serverAddress)) return false;
  if (('state' in v && v.state !== undefined && !isInt32(v.state)) || typeof v.local !== 'boolean' || typeof v.since !== 'number' || !Array.isArray(v.callbacks)) return false;
  return v.callbacks.every((c: unknown) => isObject(c) && hasOnly(c, CALLBACK_KEYS) && isText(c.myName, 0) && isInt32(c.myProg) && isInt32(c.myVers) && isInt32(c.myProc)
    && typeof c.priv === 'string' && PRIV.test(c.priv) && typeof c.callbackAddress === 'string' && isAddress(c.callbackAddress));
}

/** A state number as written ("<n>\n"), or undefined when it is not one. */
export function parseStateNumber(text: string): number | undefined {
  const m = /^(-?\d{1,10})\n?$/.exec(text);
  const n = m ? Number(m[1]) : NaN;
  return int32.safeParse(n).success ? n : undefined;
}

/** A file name for a record: readable when safe and short, a hash otherwise. */
export function recordFileName(monName: string, address: string): string {
  const key = encodeURIComponent(recordKey(monName, address)).replace(/^\./, '%2E');
  return key.length <= 200 ? `${key}.json` : `${createHash('sha256').update(recordKey(monName, address)).digest('hex')}.json`;
}

interface PendingOp {
  dir: string;
  /** null: remove the file. */
  content: Buffer | null;
  waiters: Array<{ resolve(): void; reject(err: Error): void }>;
}

export interface NsmStoreOptions {
  log?: Pick<Logger, 'warn' | 'info' | 'debug'>;
  /** Records read between two turns of the event loop at load. Default 128. */
  readChunk?: number;
  /** This node's name: its identity's folder is node-<host>. Default the host name. */
  host?: string;
}

/** Temp files of this process get distinct names: two writers of one file never share one. */
let tmpSerial = 0;

export class NsmStore {
  private pending = new Map<string, PendingOp>();
  private committing: Promise<void> | undefined;
  private readonly log: NonNullable<NsmStoreOptions['log']> | undefined;
  /** Count of directory fsyncs, for tests and metrics: group commit keeps it low. */
  dirSyncs = 0;

  private readonly host: string;
  private readonly nodeDir: string;

  constructor(readonly stateDir: string, private readonly opts: NsmStoreOptions = {}) {
    this.log = opts.log;
    this.host = opts.host ?? hostname();
    if (!this.host || this.host.includes('/') || this.host.startsWith('.')) throw new RangeError(`bad host name ${JSON.stringify(this.host)}`);
    this.nodeDir = path.join(stateDir, `node-${this.host}`);
  }

  /** The folder of a server address; loopback is the node's own identity, kept per host. */
  addressDir(serverAddress: string): string {
    if (!serverAddress || serverAddress.includes('/') || serverAddress.startsWith('.')) throw new RangeError(`bad server address ${JSON.stringify(serverAddress)}`);
    if (isAddress(serverAddress) && isLoopback(serverAddress)) return this.nodeDir;
    return path.join(this.stateDir, serverAddress);
  }

  /**
   * Earlier versions kept the node's identity in <state-dir>/127.0.0.1, shared by every node
   * of a shared directory: the first node to load its identity takes it over (rename is atomic:
   * one node wins), the others start their own.
   */
  private adoptLegacyNodeDir(): void {
    if (fsSync.existsSync(this.nodeDir)) return;
    const legacy = path.join(this.stateDir, '127.0.0.1');
    try {
      fsSync.renameSync(legacy, this.nodeDir);
      this.log?.info({ from: legacy, to: this.nodeDir }, `nsm: the node's records moved from ${legacy} to ${this.nodeDir} (one folder per host)`);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'EEXIST' && code !== 'ENOTEMPTY') throw err;
    }
  }
  hostsDir(serverAddress: string): string { return path.join(this.addressDir(serverAddress), 'hosts'); }
  statePath(serverAddress: string): string { return path.join(this.addressDir(serverAddress), 'state'); }
  recordPath(r: Pick<HostRecord, 'monName' | 'address' | 'serverAddress'>): string {
    return path.join(this.hostsDir(r.serverAddress), recordFileName(r.monName, r.address));
  }

  /** The server addresses that have a folder in the state directory. */
  async addresses(): Promise<string[]> {
    let entries;
    try {
      entries = await fs.readdir(this.stateDir, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    return entries.filter((e) => e.isDirectory() && isAddress(e.name)).map((e) => e.name).sort();
  }

  async load(serverAddress: string): Promise<LoadedAddress> {
    if (this.addressDir(serverAddress) === this.nodeDir) this.adoptLegacyNodeDir();
    const skipped: SkippedFile[] = [];
    const skip = (p: string, reason: string): void => {
      skipped.push({ path: p, reason });
      this.log?.warn({ path: p, reason }, 'nsm: skipping unreadable record');
    };
    let state: number | undefined;
    const sp = this.statePath(serverAddress);
    try {
      const text = await fs.readFile(sp, 'utf8');
      state = parseStateNumber(text);
      if (state === undefined) skip(sp, text.length === 0 ? 'empty state file' : 'corrupt state file');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') skip(sp, (err as Error).message);
    }

    const dir = this.hostsDir(serverAddress);
    let names: string[];
    try {
      names = await fs.readdir(dir);
    } catch (err) {
      // Unreadable: reported like a bad record, and the address starts with what could be read.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') skip(dir, (err as Error).message);
      names = [];
    }
    const records: HostRecord[] = [];
    const readOne = (file: string): void => {
      const p = path.join(dir, file);
      if (file.startsWith('.')) {
        // A temp file left by a crash before its rename: the record it replaced is intact.
        if (file.endsWith('.tmp')) fsSync.rmSync(p, { force: true });
        return;
      }
      let text: string;
      try {
        text = fsSync.readFileSync(p, 'utf8');
      } catch (err) {
        return skip(p, (err as Error).message);
      }
      if (text.length === 0) return skip(p, 'empty record');
      const r = parseHostRecord(text);
      if (typeof r === 'string') return skip(p, r);
      if (r.serverAddress !== serverAddress) return skip(p, `record names server address ${r.serverAddress}`);
      records.push(r);
    };
    // Small files read synchronously (several times faster than fs.promises), a chunk at a time
    // so other work still gets the event loop while 10k records load.
    const chunk = this.opts.readChunk ?? 128;
    for (let i = 0; i < names.length; i += chunk) {
      for (const f of names.slice(i, i + chunk)) readOne(f);
      await new Promise<void>((r) => setImmediate(r));
    }
    return { serverAddress, state, records, skipped };
  }

  /** Durably writes (or replaces) a host record. */
  put(record: HostRecord): Promise<void> {
    const content = Buffer.from(`${JSON.stringify(record)}\n`);
    return this.schedule(this.recordPath(record), content);
  }

  /** Durably removes a host record (no error when it is already gone). */
  remove(record: Pick<HostRecord, 'monName' | 'address' | 'serverAddress'>): Promise<void> {
    return this.schedule(this.recordPath(record), null);
  }

  writeState(serverAddress: string, state: number): Promise<void> {
    int32.parse(state);
    return this.schedule(this.statePath(serverAddress), Buffer.from(`${state}\n`));
  }

  /** Resolves once everything scheduled so far is durable. */
  async flush(): Promise<void> {
    while (this.committing) await this.committing;
  }

  private schedule(file: string, content: Buffer | null): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let op = this.pending.get(file);
      if (!op) {
        op = { dir: path.dirname(file), content, waiters: [] };
        this.pending.set(file, op);
      }
      op.content = content; // the last write to a file in one batch wins
      op.waiters.push({ resolve, reject });
      this.committing ??= this.commitLoop();
    });
  }

  private async commitLoop(): Promise<void> {
    // Let every write issued in this tick join the first batch.
    await new Promise<void>((r) => setImmediate(r));
    while (this.pending.size > 0) {
      const batch = this.pending;
      this.pending = new Map();
      await this.commit(batch);
    }
    this.committing = undefined;
  }

  // The cheap steps (open, write, close, rename) run synchronously, a batch at a time: through
  // fs.promises each costs a FileHandle and a thread-pool round trip, several times the syscall.
  // Only the fsyncs, which wait for the disk, go to the thread pool, in parallel.
  private async commit(batch: Map<string, PendingOp>): Promise<void> {
    const failed = new Map<string, Error>();
    const dirs = new Set<string>();
    const made = new Map<string, string | undefined>(); // folder -> topmost folder mkdir had to make
    const written: Array<{ file: string; tmp: string; fd: number }> = [];
    for (const [file, op] of batch) {
      try {
        if (op.content === null) {
          fsSync.rmSync(file, { force: true });
          dirs.add(op.dir);
          continue;
        }
        if (!made.has(op.dir)) made.set(op.dir, fsSync.mkdirSync(op.dir, { recursive: true }));
        const tmp = path.join(op.dir, `.${path.basename(file)}.${this.host}.${process.pid}.${++tmpSerial}.tmp`);
        const fd = fsSync.openSync(tmp, 'w', 0o644);
        written.push({ file, tmp, fd });
        fsSync.writeSync(fd, op.content);
      } catch (err) {
        failed.set(file, err as Error);
      }
    }
    // Data and size on disk before the rename makes the file visible under its name.
    await Promise.all(written.map(async (w) => {
      if (failed.has(w.file)) return;
      try {
        await fdatasync(w.fd);
      } catch (err) {
        failed.set(w.file, err as Error);
      }
    }));
    for (const w of written) {
      try {
        fsSync.closeSync(w.fd);
        if (failed.has(w.file)) {
          fsSync.rmSync(w.tmp, { force: true }); // the record it would have replaced stays
        } else {
          fsSync.renameSync(w.tmp, w.file);
          dirs.add(path.dirname(w.file));
        }
      } catch (err) {
        failed.set(w.file, err as Error);
      }
    }
    // The renames (and new folders) are durable once their folders are synced: each once per batch.
    const toSync = new Set(dirs);
    for (const [dir, top] of made) {
      if (top === undefined) continue;
      for (let d = dir; d.length >= top.length; d = path.dirname(d)) toSync.add(d);
      toSync.add(path.dirname(top));
    }
    const dirFailed = new Map<string, Error>();
    await Promise.all([...toSync].map(async (d) => {
      try {
        const fh = await fs.open(d, 'r');
        try {
          await fh.sync();
          this.dirSyncs++;
        } finally {
          await fh.close();
        }
      } catch (err) {
        dirFailed.set(d, err as Error);
      }
    }));
    for (const [file, op] of batch) {
      const err = failed.get(file) ?? dirFailed.get(op.dir);
      for (const w of op.waiters) if (err) w.reject(err); else w.resolve();
    }
  }
}
