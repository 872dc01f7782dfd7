// The cluster store on the shared state directory: per address, an append-only journal
//
//   <state-dir>/<address>/journal    header, then records (codec.ts)
//
// written only by the address's holder (its lease says who) and read by every node.
//
// Writing: the records appended in one turn go out in one write at the journal's end and one
// fdatasync (group commit); commit() resolves after it. When the file is more than twice its live
// content (and past compactMinBytes), the holder writes the live entries to a temp file of its own
// under a new generation, syncs it, renames it over the journal and syncs the folder. Its header
// names the generation and offset it was made from: a follower that had read exactly that far
// (the usual case with inotify) goes on after the compacted part without reading it, no reset.
//
// Following: each address folder is watched (inotify, for writers on this machine or a local
// filesystem) and every journal is looked at every pollMs (other NFS clients' writes raise no
// inotify; opening the file each time also revalidates NFS's cached attributes). New bytes are
// read from the last offset; another file (its header differs: each file has a random id) or a
// shorter one is read whole, as a reset unless it is a compaction of exactly what was read.
// Reading stops at the first record that is not whole and checksummed: a follower reports such
// a tail once it has stayed put for settle time (a write may be under way), the new holder cuts
// it off at takeOver. Neither ever applies it.
import { randomInt } from 'node:crypto';
import fs, { type FSWatcher } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { Observable, Subject } from 'rxjs';
import type { Logger } from 'pino';
import { isAddress, normaliseAddress } from '../net';
import { checkRecord, decodeHeader, decodeRecords, encodeHeader, encodeRecords, framedBytes, HEADER_BYTES, JournalFormatError, recordBytes, writeRecord, type JournalHeader } from './codec';
import { NodeRegistry, reached, type Position } from './nodes';
import type { BarrierResult, ClusterStore, JournalChange, JournalFault, JournalRecord } from './types';

const fdatasync = promisify(fs.fdatasync);
const fsync = promisify(fs.fsync);

export const JOURNAL_FILE = 'journal';
/** The writer's batch buffer: as first made, and the most kept between batches. */
const BATCH_BYTES = 64 * 1024;
const MAX_KEPT_BATCH_BYTES = 1024 * 1024;
/** Between two looks at the other nodes' files while a barrier waits (inotify wakes it sooner). */
const BARRIER_POLL_MS = 10;

export interface DirectoryStoreOptions {
  stateDir: string;
  /** This node's name (the host name): its file in `.nodes/`. */
  node: string;
  /** Between two looks at every journal and node file. Default 100. */
  pollMs?: number;
  /** A node whose heartbeat has not moved for this long is not live. Default 5000. */
  livenessMs?: number;
  /** inotify on the folders (default true); false: polling only, as over NFS. */
  watch?: boolean;
  /** A journal is compacted only past this size. Default 1 MiB: under LOCK/UNLOCK churn with few locks held, 64 KiB meant 50 compactions a second, each a reset on every follower (bench/RESULTS.md). */
  compactMinBytes?: number;
  log: Pick<Logger, 'error' | 'warn' | 'info' | 'debug'>;
}

/** The commit of one batch: every commit() asked for before it is written shares it. */
interface Batch {
  promise: Promise<void>;
  resolve(): void;
  reject(err: Error): void;
}

function newBatch(): Batch {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

interface Writer {
  fd: number;
  /** Where the next record goes: everything before it is written and synced. */
  end: number;
  pending: JournalRecord[];
  /** The pending records framed as they were appended (bytes[0, used)): the batch's write, reused batch after batch. */
  bytes: Buffer;
  used: number;
  /** The commit the next batch resolves: made by the first commit() after the last batch was taken. */
  next: Batch | undefined;
  loop: Promise<void> | undefined;
  failed: Error | undefined;
  /** Its filesystem's fsync does nothing (tmpfs, ramfs): fdatasync is called in the loop, which it cannot block. */
  syncInLoop: boolean;
}

interface Journal {
  address: string;
  dir: string;
  file: string;
  /** undefined: no journal read (none yet, or unreadable). */
  generation: number | undefined;
  /** The header of the file read: another one there means another file. */
  head: Buffer | undefined;
  /** End of the trusted records read or written. */
  offset: number;
  live: Map<string, Buffer>;
  /** Bytes the live entries take as records: what a compaction would leave (counted once this node writes). */
  liveBytes: number | undefined;
  watcher: FSWatcher | undefined;
  readScheduled: boolean;
  writer: Writer | undefined;
  /** A takeOver under way: the journal is not followed meanwhile, and a second call shares it. */
  taking: Promise<Map<string, Buffer>> | undefined;
  /** A tail not trusted, as first seen: reported once it stays put. */
  bad: { key: string; since: number; reported: boolean } | undefined;
  /** The unreadable file last reported (size:reason), so it is reported once. */
  unreadable: string | undefined;
  /** The fault reported and still there: a new subscriber of faults$ gets it first. */
  standing: JournalFault | undefined;
}

type ReadResult =
  | { state: 'absent' }
  | { state: 'unreadable'; reason: string; key: string; empty: boolean }
  | { state: 'ok'; size: number; head: string; bad?: { offset: number; reason: string } };

export interface StoreCounters {
  /** Journal writes (one per batch) and their fdatasyncs. */
  writes: number;
  /** Records in those writes. */
  records: number;
  syncs: number;
  compactions: number;
  faults: number;
}

export class DirectoryStore implements ClusterStore {
  private readonly journals = new Map<string, Journal>();
  private readonly changes = new Subject<JournalChange>();
  private readonly faults = new Subject<JournalFault>();
  private readonly nodes: NodeRegistry;
  private readonly pollMs: number;
  private readonly settleMs: number;
  private readonly compactMinBytes: number;
  private readonly log: DirectoryStoreOptions['log'];
  private poller: NodeJS.Timeout | undefined;
  private dirWatcher: FSWatcher | undefined;
  private scanScheduled = false;
  private closed = false;
  readonly counters: StoreCounters = { writes: 0, records: 0, syncs: 0, compactions: 0, faults: 0 };

  readonly changes$: Observable<JournalChange>;
  readonly faults$: Observable<JournalFault>;

  /** Opens the store: every journal read, this node announced, following started. */
  static async open(opts: DirectoryStoreOptions): Promise<DirectoryStore> {
    const store = new DirectoryStore(opts);
    store.start();
    return store;
  }

  private constructor(private readonly opts: DirectoryStoreOptions) {
    this.pollMs = opts.pollMs ?? 100;
    this.settleMs = Math.max(250, 5 * this.pollMs);
    this.compactMinBytes = opts.compactMinBytes ?? 1024 * 1024;
    this.log = opts.log;
    this.nodes = new NodeRegistry({ stateDir: opts.stateDir, node: opts.node, livenessMs: opts.livenessMs ?? 5_000, watch: opts.watch ?? true, log: opts.log });
    this.changes$ = new Observable<JournalChange>((subscriber) => {
      for (const j of this.journals.values()) {
        if (j.generation !== undefined) subscriber.next({ address: j.address, records: entries(j.live), reset: true });
      }
      return this.changes.subscribe(subscriber);
    });
    this.faults$ = new Observable<JournalFault>((subscriber) => {
      for (const j of this.journals.values()) if (j.standing) subscriber.next(j.standing);
      return this.faults.subscribe(subscriber);
    });
  }

  private start(): void {
    fs.mkdirSync(this.opts.stateDir, { recursive: true, mode: 0o755 });
    this.scan();
    this.nodes.start();
    if (this.opts.watch ?? true) {
      try {
        this.dirWatcher = fs.watch(this.opts.stateDir, { persistent: false }, () => this.scheduleScan());
        this.dirWatcher.on('error', () => this.dirWatcher?.close());
      } catch {
        // Polling finds new address folders.
      }
    }
    this.poller = setInterval(() => this.poll(), this.pollMs);
    this.poller.unref();
  }

  // ---- following ----

  private poll(): void {
    if (this.closed) return;
    this.scan();
    this.nodes.refresh();
  }

  private scheduleScan(): void {
    if (this.scanScheduled) return;
    this.scanScheduled = true;
    setImmediate(() => {
      this.scanScheduled = false;
      if (!this.closed) this.scan();
    });
  }

  /** Finds address folders not known yet, and reads every journal this node does not write. */
  private scan(): void {
    let names: string[] = [];
    try {
      names = fs.readdirSync(this.opts.stateDir);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, `cannot list the state directory ${this.opts.stateDir}: ${(err as Error).message}`);
    }
    for (const name of names) {
      if (this.journals.has(name) || name.startsWith('.') || !isAddress(name) || normaliseAddress(name) !== name) continue;
      this.journal(name);
    }
    for (const j of this.journals.values()) {
      this.watchFolder(j); // a folder removed and made again: watched anew
      if (!j.writer && !j.taking) this.follow(j);
    }
  }

  private journal(address: string): Journal {
    let j = this.journals.get(address);
    if (j) return j;
    const dir = path.join(this.opts.stateDir, address);
    j = { address, dir, file: path.join(dir, JOURNAL_FILE), generation: undefined, head: undefined, offset: 0, live: new Map(), liveBytes: 0, watcher: undefined, readScheduled: false, writer: undefined, taking: undefined, bad: undefined, unreadable: undefined, standing: undefined };
    this.journals.set(address, j);
    this.watchFolder(j);
    return j;
  }

  private watchFolder(j: Journal): void {
    if (!(this.opts.watch ?? true) || j.watcher) return;
    try {
      j.watcher = fs.watch(j.dir, { persistent: false }, (_event, name) => {
        if (name === null || name === JOURNAL_FILE) this.scheduleFollow(j);
      });
      j.watcher.on('error', () => {
        j.watcher?.close();
        j.watcher = undefined;
      });
    } catch {
      // Not a folder (yet), or out of watches: the poll reads it.
    }
  }

  private scheduleFollow(j: Journal): void {
    if (j.readScheduled) return;
    j.readScheduled = true;
    setImmediate(() => {
      j.readScheduled = false;
      if (!this.closed && !j.writer && !j.taking) this.follow(j);
    });
  }

  /** Reads what is new in a journal this node follows, and reports what it cannot trust. */
  private follow(j: Journal): void {
    const r = this.read(j);
    if (r.state === 'unreadable') {
      if (j.unreadable !== r.key) {
        j.unreadable = r.key;
        this.fault(j, 0, r.reason, false);
      }
    } else j.unreadable = undefined;
    if (r.state !== 'ok' || !r.bad) {
      j.bad = undefined;
      if (r.state !== 'unreadable') j.standing = undefined;
      return;
    }
    const key = `${r.head}:${r.size}:${r.bad.offset}`;
    const now = performance.now();
    if (j.bad?.key !== key) j.bad = { key, since: now, reported: false };
    else if (!j.bad.reported && now - j.bad.since >= this.settleMs) {
      // Settled. Read the file whole once before reporting: bytes this node applied may have
      // changed under it (a writer's unsynced data lost with its machine, then rewritten).
      const again = this.read(j, true);
      const bad = again.state === 'ok' ? again.bad : undefined;
      if (!bad) return void (j.bad = undefined);
      j.bad = { key: `${again.state === 'ok' ? `${again.head}:${again.size}` : ''}:${bad.offset}`, since: now, reported: true };
      this.fault(j, bad.offset, bad.reason, false);
    }
  }

  /** Reads the journal from where this node left it (whole when it is another file, or asked), emitting what it applies. */
  private read(j: Journal, whole = false): ReadResult {
    let fd: number;
    try {
      fd = fs.openSync(j.file, 'r');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        if (!fs.existsSync(j.dir)) {
          // Its watch died with the folder.
          j.watcher?.close();
          j.watcher = undefined;
        }
        if (j.generation !== undefined) {
          // Removed (by an operator): nothing is held through the address any more.
          this.setState(j, undefined, undefined, 0, new Map());
          this.changes.next({ address: j.address, records: [], reset: true });
        }
        return { state: 'absent' };
      }
      return { state: 'unreadable', reason: (err as Error).message, key: `open:${code}`, empty: false };
    }
    try {
      const st = fs.fstatSync(fd);
      const head = readAt(fd, 0, Math.min(st.size, HEADER_BYTES));
      const headHex = head.toString('hex');
      if (whole || j.generation === undefined || !j.head?.equals(head) || st.size < j.offset) {
        let header: JournalHeader;
        try {
          header = decodeHeader(head);
        } catch (err) {
          if (!(err instanceof JournalFormatError)) throw err;
          return { state: 'unreadable', reason: err.message, key: `${st.size}:${headHex}:${err.message}`, empty: st.size === 0 };
        }
        const from = header.from;
        if (!whole && from && from.generation === j.generation && from.offset === j.offset && header.compactedEnd <= st.size) {
          // A compaction of exactly what this node has read: the same entries, nothing to apply.
          j.generation = header.generation;
          j.head = head;
          j.offset = header.compactedEnd;
          this.nodes.setApplied(j.address, position(j));
        } else {
          const d = decodeRecords(readAt(fd, HEADER_BYTES, st.size - HEADER_BYTES));
          const live = new Map<string, Buffer>();
          for (const r of d.records) if (r.value === null) live.delete(r.key); else live.set(r.key, r.value);
          this.setState(j, header.generation, head, HEADER_BYTES + d.end, live);
          // 100k entries as records cost ~50 ms: not made for nobody (a store opening, before its first subscriber).
          if (this.changes.observed) this.changes.next({ address: j.address, records: entries(live), reset: true });
          this.nodes.setApplied(j.address, position(j));
          return { state: 'ok', size: st.size, head: headHex, bad: d.bad && { offset: HEADER_BYTES + d.bad.offset, reason: d.bad.reason } };
        }
      }
      if (st.size === j.offset) return { state: 'ok', size: st.size, head: headHex };
      const d = decodeRecords(readAt(fd, j.offset, st.size - j.offset));
      if (d.records.length > 0) {
        this.apply(j, d.records);
        j.offset += d.end;
        this.changes.next({ address: j.address, records: d.records, reset: false });
        this.nodes.setApplied(j.address, position(j));
      }
      return { state: 'ok', size: st.size, head: headHex, bad: d.bad && { offset: j.offset, reason: d.bad.reason } };
    } finally {
      fs.closeSync(fd);
    }
  }

  private setState(j: Journal, generation: number | undefined, head: Buffer | undefined, offset: number, live: Map<string, Buffer>): void {
    j.generation = generation;
    j.head = head;
    j.offset = offset;
    j.live = live;
    j.liveBytes = undefined;
  }

  private apply(j: Journal, records: readonly JournalRecord[]): void {
    for (const { key, value } of records) {
      if (j.liveBytes === undefined) {
        if (value === null) j.live.delete(key);
        else j.live.set(key, value);
        continue;
      }
      const was = j.live.get(key);
      const keyBytes = was || value ? recordBytes(key, null) : 0;
      if (was) j.liveBytes -= keyBytes + was.length;
      if (value === null) j.live.delete(key);
      else {
        j.live.set(key, value);
        j.liveBytes += keyBytes + value.length;
      }
    }
  }

  private fault(j: Journal, position: number, reason: string, truncated: boolean): void {
    this.counters.faults++;
    const what = truncated ? 'cut off by this node, the new holder' : 'not applied';
    this.log.error({ address: j.address, file: j.file, offset: position, reason, truncated }, `journal of ${j.address}: untrusted data at byte ${position} of ${j.file} (${reason}): ${what}`);
    const f: JournalFault = { address: j.address, where: j.file, position, reason, truncated };
    j.standing = truncated ? undefined : f;
    this.faults.next(f);
  }

  // ---- writing ----

  async takeOver(address: string): Promise<Map<string, Buffer>> {
    checkAddress(address);
    this.checkOpen();
    const j = this.journal(address);
    if (j.writer && !j.writer.failed) return new Map(j.live);
    j.taking ??= this.take(j).finally(() => (j.taking = undefined));
    return j.taking;
  }

  private async take(j: Journal): Promise<Map<string, Buffer>> {
    const address = j.address;
    if (j.writer) this.dropWriter(j);
    fs.mkdirSync(j.dir, { recursive: true, mode: 0o755 });
    this.watchFolder(j);
    const r = this.read(j);
    if (r.state === 'unreadable') {
      if (!r.empty) {
        if (j.unreadable !== r.key) this.fault(j, 0, r.reason, false);
        j.unreadable = r.key;
        throw new JournalFormatError(`cannot take over the journal of ${address} (${j.file}): ${r.reason}`);
      }
      // Empty: a journal whose creation never reached the disk. Nothing in it to lose.
      this.fault(j, 0, r.reason, true);
    }
    if (r.state !== 'ok') await this.create(j);
    const fd = fs.openSync(j.file, 'r+');
    try {
      if (r.state === 'ok' && r.bad) {
        this.fault(j, r.bad.offset, r.bad.reason, true);
        fs.ftruncateSync(fd, r.bad.offset);
        await fsync(fd);
      }
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
    j.bad = undefined;
    j.unreadable = undefined;
    j.standing = undefined;
    if (j.liveBytes === undefined) {
      j.liveBytes = 0;
      for (const [key, value] of j.live) j.liveBytes += recordBytes(key, value);
    }
    j.writer = { fd, end: j.offset, pending: [], bytes: Buffer.allocUnsafe(BATCH_BYTES), used: 0, next: undefined, loop: undefined, failed: undefined, syncInLoop: fsyncIsNoop(j.dir) };
    this.nodes.setApplied(address, position(j));
    return new Map(j.live);
  }

  /** Writes a new journal (temp file, sync, rename, folder sync): it is never seen half made. */
  private async create(j: Journal): Promise<void> {
    const records = encodeRecords(entries(j.live));
    await this.replaceFile(j, { generation: nextGeneration(j.generation ?? 0), fileId: randomInt(2 ** 32), compactedEnd: HEADER_BYTES + records.length }, records, false);
  }

  /** Replaces the journal by a header and records; with keepOpen the writer moves to the new file. */
  private async replaceFile(j: Journal, header: JournalHeader, records: Buffer, keepOpen: boolean): Promise<void> {
    const head = encodeHeader(header);
    const content = Buffer.concat([head, records]);
    const tmp = path.join(j.dir, `.${JOURNAL_FILE}.${this.opts.node}.${process.pid}.tmp`);
    const fd = fs.openSync(tmp, 'w', 0o644);
    try {
      writeAt(fd, content, 0);
      await fdatasync(fd);
      fs.renameSync(tmp, j.file);
    } catch (err) {
      fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });
      throw err;
    }
    j.generation = header.generation;
    j.head = head;
    j.offset = content.length;
    if (keepOpen && j.writer) {
      fs.closeSync(j.writer.fd);
      j.writer.fd = fd;
      j.writer.end = content.length;
    } else fs.closeSync(fd);
    if (!keepOpen) this.nodes.setApplied(j.address, position(j));
    await syncFolder(j.dir);
  }

  append(address: string, records: JournalRecord[]): void {
    const w = this.journals.get(address)?.writer;
    if (!w) throw new Error(`this node does not write the journal of ${address}: takeOver first`);
    if (w.failed) throw w.failed;
    // Framed here, once (a record refused refuses the call, nothing of it appended): the batch's
    // write is then the bytes as they are.
    const keyBytes: number[] = [];
    let need = w.used;
    for (const r of records) {
      const k = checkRecord(r);
      keyBytes.push(k);
      need += framedBytes(k, r.value);
    }
    if (need > w.bytes.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, 2 * w.bytes.length));
      w.bytes.copy(grown, 0, 0, w.used);
      w.bytes = grown;
    }
    for (let i = 0; i < records.length; i++) {
      w.used = writeRecord(w.bytes, w.used, records[i]!, keyBytes[i]!);
      w.pending.push(records[i]!);
    }
    this.kick(this.journals.get(address) as Journal);
  }

  commit(): Promise<void> {
    // One promise per batch, not per call: the grants of a turn share it as they share the write.
    let one: Promise<void> | undefined;
    let more: Promise<void>[] | undefined;
    for (const j of this.journals.values()) {
      const w = j.writer;
      if (!w || (w.pending.length === 0 && !w.loop)) continue;
      const p = (w.next ??= newBatch()).promise;
      if (one === undefined) one = p;
      else (more ??= [one]).push(p);
      this.kick(j);
    }
    return more ? Promise.all(more).then(() => undefined) : (one ?? Promise.resolve());
  }

  private kick(j: Journal): void {
    const w = j.writer;
    if (w && !w.loop) w.loop = this.flushLoop(j, w);
  }

  private async flushLoop(j: Journal, w: Writer): Promise<void> {
    // Every append of this turn joins the first batch; later ones queue behind its fdatasync.
    await new Promise<void>((r) => setImmediate(r));
    while (w.pending.length > 0 || w.next) {
      const records = w.pending;
      const batch = w.next;
      w.pending = [];
      w.next = undefined;
      // A view of the buffer the next appends reuse: written before anything else runs.
      const bytes = w.bytes.subarray(0, w.used);
      w.used = 0;
      try {
        if (w.failed) throw w.failed;
        if (records.length > 0) await this.writeBatch(j, w, records, bytes);
      } catch (err) {
        if (!w.failed) {
          w.failed = new Error(`journal of ${j.address} (${j.file}) failed: ${(err as Error).message}; no more appends until it is taken over again`);
          this.log.error({ address: j.address, file: j.file, err: (err as Error).message }, w.failed.message);
        }
        batch?.reject(w.failed);
        continue;
      }
      batch?.resolve();
      if (j.writer === w && w.end > this.compactMinBytes && w.end > 2 * (HEADER_BYTES + (j.liveBytes ?? 0))) await this.compact(j, w);
    }
    w.loop = undefined;
  }

  private async writeBatch(j: Journal, w: Writer, records: JournalRecord[], bytes: Buffer): Promise<void> {
    writeAt(w.fd, bytes, w.end);
    // A drop's batch may have grown the buffer far past the usual: not kept.
    if (w.bytes.length > MAX_KEPT_BATCH_BYTES) w.bytes = Buffer.allocUnsafe(BATCH_BYTES);
    this.counters.writes++;
    this.counters.records += records.length;
    // Through the threadpool a sync costs its round trip (~40 µs of CPU on a busy 2-core machine,
    // bench/RESULTS.md): worth it only where the sync may block.
    if (w.syncInLoop) fs.fdatasyncSync(w.fd);
    else await fdatasync(w.fd);
    this.counters.syncs++;
    w.end += bytes.length;
    j.offset = w.end;
    this.apply(j, records);
    // Not told to the other nodes here: they wait only for followers (a node file rewritten at
    // every batch would cost the holder a second write per commit). release() tells it.
    this.changes.next({ address: j.address, records, reset: false });
  }

  private async compact(j: Journal, w: Writer): Promise<void> {
    const before = w.end;
    const generation = nextGeneration(j.generation ?? 0);
    const records = encodeRecords(entries(j.live));
    try {
      await this.replaceFile(j, { generation, fileId: randomInt(2 ** 32), from: position(j), compactedEnd: HEADER_BYTES + records.length }, records, true);
    } catch (err) {
      // The old file stays whole and in use: compaction is tried again after the next batch.
      this.log.warn({ address: j.address, err: (err as Error).message }, `cannot compact the journal of ${j.address}: ${(err as Error).message}`);
      return;
    }
    this.counters.compactions++;
    this.log.debug({ address: j.address, before, after: w.end, generation }, `journal of ${j.address} compacted: ${before} → ${w.end} bytes (generation ${generation})`);
  }

  async release(address: string): Promise<void> {
    const j = this.journals.get(address);
    const w = j?.writer;
    if (!j || !w) return;
    try {
      while (w.loop) await w.loop;
    } finally {
      this.dropWriter(j);
      this.nodes.setApplied(address, position(j));
    }
  }

  private dropWriter(j: Journal): void {
    if (!j.writer) return;
    fs.closeSync(j.writer.fd);
    j.writer = undefined;
  }

  // ---- acknowledgements ----

  async barrier(address: string, timeoutMs: number): Promise<BarrierResult> {
    checkAddress(address);
    const t0 = performance.now();
    await this.commit();
    const j = this.journals.get(address);
    if (j && !j.writer && !j.taking) this.follow(j);
    const target: Position = j?.generation !== undefined ? position(j) : { generation: 0, offset: 0 };
    for (;;) {
      this.nodes.refresh();
      const live = this.nodes.live();
      const acked = live.filter((n) => reached(this.nodes.appliedBy(n, address) ?? { generation: 0, offset: 0 }, target));
      const ms = performance.now() - t0;
      if (acked.length === live.length || ms >= timeoutMs || this.closed) {
        return { acked, missing: live.filter((n) => !acked.includes(n)), ms };
      }
      await this.nodes.changed(Math.min(BARRIER_POLL_MS, timeoutMs - ms));
    }
  }

  liveNodes(): string[] {
    return this.nodes.live();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.commit();
    } catch {
      // Reported where it failed; the appenders' commits were rejected.
    }
    this.closed = true;
    clearInterval(this.poller);
    this.dirWatcher?.close();
    for (const j of this.journals.values()) {
      j.watcher?.close();
      this.dropWriter(j);
    }
    this.nodes.close();
    this.changes.complete();
    this.faults.complete();
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('the store is closed');
  }
}

const entries = (live: Map<string, Buffer>): JournalRecord[] => [...live].map(([key, value]) => ({ key, value }));

const position = (j: Journal): Position => ({ generation: j.generation ?? 0, offset: j.offset });

/** Generations run 1..2^32-1 and wrap to 1: 0 is "no journal". */
const nextGeneration = (g: number): number => (g >= 0xffffffff ? 1 : g + 1);

function checkAddress(address: string): void {
  if (!isAddress(address) || normaliseAddress(address) !== address) throw new RangeError(`${JSON.stringify(address)} is not a server address in canonical form`);
}

/** Filesystems whose fsync is the kernel's noop_fsync: their data lives in memory. */
const NOOP_FSYNC = new Set([0x01021994 /* tmpfs */, 0x858458f6 /* ramfs */]);

function fsyncIsNoop(dir: string): boolean {
  try {
    return NOOP_FSYNC.has(fs.statfsSync(dir).type);
  } catch {
    return false;
  }
}

function readAt(fd: number, position: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  let got = 0;
  while (got < length) {
    const n = fs.readSync(fd, b, got, length - got, position + got);
    if (n === 0) break; // shrunk meanwhile: what was read is what there is
    got += n;
  }
  return got === length ? b : b.subarray(0, got);
}

function writeAt(fd: number, b: Buffer, position: number): void {
  for (let done = 0; done < b.length;) done += fs.writeSync(fd, b, done, b.length - done, position + done);
}

async function syncFolder(dir: string): Promise<void> {
  const fd = fs.openSync(dir, 'r');
  try {
    await fsync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
