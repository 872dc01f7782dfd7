// Which nodes follow the journals, and how far each has read: one small file per node,
//
//   <state-dir>/.nodes/<node>   {"node","pid","seq","at","applied":{"<address>":[generation, offset]}}
//
// rewritten atomically (a temp file of this writer, renamed over it) with a new `seq` every third
// of the liveness bound (the heartbeat) and, debounced to one write per turn, whenever the node
// has applied more of a journal. Not fsynced: it says what a running node has done, so after a
// crash of its machine it is moot (the node is dead, or rewrites it when it starts), and an
// unreadable one is ignored. An fsync would put one more journal commit (ext4) or COMMIT (NFS)
// on the shared storage per change a follower applies, in the way of the holders' commits, and
// measured as the barrier's p99 on ext4 going from 6 to 12 ms (bench/RESULTS.md). On NFS, close()
// has sent the data to the server before the rename. Another node counts it live while it sees `seq` change within the
// bound, measured on its own clock (as the address lease is): clocks of different nodes are never
// compared. A node first seen counts as live for one bound. A clean close removes the file.
import fs, { type FSWatcher } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';


/** How far a node has applied one address's journal. */
export interface Position {
  generation: number;
  offset: number;
}

/** Whether `p` is at or past `target` (a later generation is past any offset of an earlier one). */
export const reached = (p: Position | undefined, target: Position): boolean =>
  p !== undefined && (p.generation > target.generation || (p.generation === target.generation && p.offset >= target.offset));

/** The folder of node files, beside the address folders (a dot name: never an address). */
export const NODES_DIR = '.nodes';

const NODE_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}$/;

export interface NodeRegistryOptions {
  stateDir: string;
  node: string;
  livenessMs: number;
  /** false: no inotify on the folder (polling only). */
  watch: boolean;
  log: Pick<Logger, 'error' | 'warn' | 'info' | 'debug'>;
}

interface Seen {
  seq: number;
  /** performance.now() when this node last saw `seq` change. */
  changedAt: number;
  applied: Map<string, Position>;
}

export class NodeRegistry {
  private readonly dir: string;
  private readonly file: string;
  private readonly tmp: string;
  private seq = Date.now();
  private readonly applied = new Map<string, Position>();
  private readonly others = new Map<string, Seen>();
  private readonly unreadable = new Set<string>();
  private heartbeat: NodeJS.Timeout | undefined;
  private watcher: FSWatcher | undefined;
  private writeScheduled = false;
  private closed = false;
  private wakers: Array<() => void> = [];

  constructor(private readonly opts: NodeRegistryOptions) {
    if (!NODE_NAME.test(opts.node)) throw new RangeError(`bad node name ${JSON.stringify(opts.node)} (a host name: letters, digits, '.', '-', '_')`);
    this.dir = path.join(opts.stateDir, NODES_DIR);
    this.file = path.join(this.dir, opts.node);
    this.tmp = path.join(this.dir, `.${opts.node}.${process.pid}.tmp`);
  }

  /** Announces this node (its file written before this returns) and starts its heartbeat. */
  start(): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o755 });
    this.write();
    this.heartbeat = setInterval(() => this.write(), Math.max(50, Math.floor(this.opts.livenessMs / 3)));
    this.heartbeat.unref();
    if (this.opts.watch) {
      try {
        this.watcher = fs.watch(this.dir, { persistent: false }, () => this.wake());
        this.watcher.on('error', () => this.watcher?.close());
      } catch {
        // The folder cannot be watched: the waits' short polls remain.
      }
    }
    this.refresh();
  }

  /** This node has applied `address`'s journal up to `p`: told to the others within a turn. */
  setApplied(address: string, p: Position): void {
    const was = this.applied.get(address);
    if (was && was.generation === p.generation && was.offset === p.offset) return;
    this.applied.set(address, { ...p });
    if (this.writeScheduled || this.closed) return;
    this.writeScheduled = true;
    setImmediate(() => {
      this.writeScheduled = false;
      this.write();
    });
  }

  private write(): void {
    if (this.closed) return;
    this.seq++;
    const applied: Record<string, [number, number]> = {};
    for (const [address, p] of this.applied) applied[address] = [p.generation, p.offset];
    const body = `${JSON.stringify({ node: this.opts.node, pid: process.pid, seq: this.seq, at: new Date().toISOString(), applied })}\n`;
    try {
      fs.writeFileSync(this.tmp, body, { mode: 0o644 });
      fs.renameSync(this.tmp, this.file);
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message, file: this.file }, `cannot write this node's file ${this.file}: ${(err as Error).message}`);
    }
  }

  /** Reads the other nodes' files: who is there, how far they have applied, and whose heartbeat moved. */
  refresh(): void {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch {
      names = [];
    }
    const now = performance.now();
    const present = new Set<string>();
    for (const name of names) {
      if (name.startsWith('.') || name === this.opts.node) continue;
      let parsed: { seq?: unknown; applied?: unknown };
      try {
        parsed = JSON.parse(fs.readFileSync(path.join(this.dir, name), 'utf8')) as typeof parsed;
        if (typeof parsed.seq !== 'number' || typeof parsed.applied !== 'object' || parsed.applied === null) throw new Error('no seq or applied');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        if (!this.unreadable.has(name)) {
          this.unreadable.add(name);
          this.opts.log.warn({ file: path.join(this.dir, name), err: (err as Error).message }, `ignoring the unreadable node file ${path.join(this.dir, name)}: ${(err as Error).message}`);
        }
        continue;
      }
      this.unreadable.delete(name);
      present.add(name);
      const applied = new Map<string, Position>();
      for (const [address, p] of Object.entries(parsed.applied as Record<string, unknown>)) {
        if (Array.isArray(p) && Number.isInteger(p[0]) && Number.isInteger(p[1])) applied.set(address, { generation: p[0] as number, offset: p[1] as number });
      }
      const seen = this.others.get(name);
      if (!seen || seen.seq !== parsed.seq) this.others.set(name, { seq: parsed.seq, changedAt: now, applied });
      else seen.applied = applied;
    }
    for (const name of this.others.keys()) if (!present.has(name)) this.others.delete(name);
  }

  /** Other nodes whose heartbeat this node saw move within the liveness bound (as of the last refresh). */
  live(): string[] {
    const now = performance.now();
    return [...this.others].filter(([, s]) => now - s.changedAt <= this.opts.livenessMs).map(([name]) => name).sort();
  }

  appliedBy(node: string, address: string): Position | undefined {
    return this.others.get(node)?.applied.get(address);
  }

  /** Resolves when the folder changes (inotify) or after `ms`, whichever comes first. */
  changed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, Math.max(0, ms));
      const wakers = this.wakers;
      function done(): void {
        clearTimeout(t);
        const i = wakers.indexOf(done);
        if (i >= 0) wakers.splice(i, 1);
        resolve();
      }
      wakers.push(done);
    });
  }

  private wake(): void {
    for (const w of this.wakers.slice()) w();
  }

  /** Stops the heartbeat and removes this node's file: the others stop counting it at once. */
  close(): void {
    this.closed = true;
    clearInterval(this.heartbeat);
    this.watcher?.close();
    this.wake();
    fs.rmSync(this.file, { force: true });
    fs.rmSync(this.tmp, { force: true });
  }
}
