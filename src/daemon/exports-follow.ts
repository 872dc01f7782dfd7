// Follows the NFS server's own export table (`exportsFrom`): knfsd's etab as exportfs rewrites
// it, or Ganesha's configuration with its %includes. inotify on the file's folder (exportfs
// writes etab.tmp and renames it over etab) says "look now"; a poll (`pollSeconds`) catches what
// inotify cannot see (another mount namespace's writes, a filesystem mounted later under an
// export, which changes the uuid knfsd puts in its handles). Each look reads the table, learns
// what knfsd builds its handles from (the path's device, inode, whether it is its filesystem's
// root, mountd's uuid) and hands the result on only when it changed.
import { execFile } from 'node:child_process';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { endianness } from 'node:os';
import { readFile, stat, statfs } from 'node:fs/promises';
import { lookup } from 'node:dns/promises';
import { basename, dirname, isAbsolute, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { addonStatus } from '../addon';
import { closeFd, filesystemId, openPath } from '../addon/files';
import { clientSpec, ganeshaExports, knfsdExports, mountdUuid, parseEtab, parseGaneshaConf, type ExportEntry, type ExportedFilesystem } from '../exports';

const run = promisify(execFile);

/** After an inotify event, before the look. */
const SETTLE_MS = 20;

export type ExportsServer = 'knfsd' | 'ganesha';

export const DEFAULT_EXPORTS_FILE: Record<ExportsServer, string> = { knfsd: '/var/lib/nfs/etab', ganesha: '/etc/ganesha/ganesha.conf' };

export interface FollowedExports {
  server: ExportsServer;
  file: string;
  entries: ExportEntry[];
  notes: string[];
  /** When the table was last read (ISO 8601), and why the last look failed, if it did. */
  readAt: string | null;
  error: string | null;
}

export interface ExportsFollowerOptions {
  server: ExportsServer;
  file?: string;
  pollMs: number;
  log: Logger;
  /** A table that differs from the last one handed on. */
  onChange: (f: FollowedExports) => void;
}

/** /proc/self/mountinfo's mount points (field 5) with their roots within their filesystems (field 4). */
export function parseMountinfo(text: string): { root: string; mountPoint: string }[] {
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return text.split('\n').filter((l) => l.trim()).map((l) => {
    const f = l.split(' ');
    return { root: unescape(f[3] ?? ''), mountPoint: unescape(f[4] ?? '') };
  });
}

/** blkid's UUID and TYPE of the block device st_dev names (mountd's get_uuid_blkdev), if any. */
async function blkid(major: number, minor: number): Promise<{ uuid?: string; type?: string }> {
  try {
    const uevent = await readFile(`/sys/dev/block/${major}:${minor}/uevent`, 'utf8');
    const dev = /^DEVNAME=(.+)$/m.exec(uevent)?.[1];
    if (!dev) return {};
    const { stdout } = await run('blkid', ['-o', 'export', `/dev/${dev}`], { timeout: 3_000 });
    return { uuid: /^UUID=(.+)$/m.exec(stdout)?.[1], type: /^TYPE=(.+)$/m.exec(stdout)?.[1] };
  } catch {
    return {};
  }
}

/** statfs's f_fsid (the addon's; Node's statfs leaves it out), if the addon is there. */
function fsidOf(path: string): [number, number] | undefined {
  if (!addonStatus().available) return undefined;
  let fd = -1;
  try {
    fd = openPath(path);
    const b = filesystemId(fd).fsid;
    const word = (at: number) => (endianness() === 'LE' ? b.readUInt32LE(at) : b.readUInt32BE(at));
    return [word(0), word(4)];
  } catch {
    return undefined;
  } finally {
    if (fd >= 0) closeFd(fd);
  }
}

/** What knfsd builds the handles of an export at `path` from; undefined when the path is not there. */
async function probe(path: string, mounts: readonly { root: string; mountPoint: string }[]): Promise<ExportedFilesystem | undefined> {
  let st;
  try {
    st = await stat(path, { bigint: true });
  } catch {
    return undefined;
  }
  const dev = st.dev;
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  const mount = mounts.filter((m) => m.mountPoint === path).at(-1);
  const fs: ExportedFilesystem = { dev: `${major}:${minor}`, ino: Number(st.ino), fsRoot: mount?.root === '/' };
  const type = await statfs(path).then((s) => s.type, () => 0);
  const b = await blkid(major, minor);
  const uuid = mountdUuid({ fsType: type, blkidUuid: b.uuid, blkidType: b.type, fsid: fsidOf(path) });
  if (uuid !== undefined) fs.uuid = uuid;
  return fs;
}

/** The addresses of the names among client specs (as mountd's getaddrinfo), in bounded time. */
async function resolveNames(clients: readonly string[]): Promise<Map<string, string[]>> {
  const names = [...new Set(clients.map(clientSpec).flatMap((s) => (s.kind === 'name' ? [s.name] : [])))];
  const out = new Map<string, string[]>();
  await Promise.all(
    names.map(async (n) => {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<string[]>((r) => (timer = setTimeout(() => r([]), 3_000)));
      const found = lookup(n, { all: true }).then((as) => as.map((a) => a.address), () => []);
      out.set(n, await Promise.race([found, late]).finally(() => clearTimeout(timer)));
    }),
  );
  return out;
}

/** ganesha.conf with its %includes (relative ones from the including file's folder): the text of each. */
function ganeshaReader(file: string): { parse: (text: string) => ReturnType<typeof parseGaneshaConf>; texts: Map<string, string> } {
  const texts = new Map<string, string>();
  return {
    texts,
    parse: (text) =>
      parseGaneshaConf(text, file, (p) => {
        const path = isAbsolute(p) ? p : resolve(dirname(file), p);
        // Read synchronously: the parser is pure and synchronous; includes are few and small.
        const body = readFileSync(path, 'utf8');
        texts.set(path, body);
        return body;
      }),
  };
}

export class ExportsFollower {
  readonly file: string;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private looking: Promise<void> | undefined;
  private again = false;
  /** What the last look saw (file texts, mounts), to skip the work when nothing changed. */
  private seen = '';
  private handed = '';
  private closed = false;
  /** The last look left out a path this node does not have (yet): the next one looks again whatever changed. */
  private absent = false;
  private settle: NodeJS.Timeout | undefined;
  current: FollowedExports;

  constructor(private readonly opts: ExportsFollowerOptions) {
    this.file = opts.file ?? DEFAULT_EXPORTS_FILE[opts.server];
    this.current = { server: opts.server, file: this.file, entries: [], notes: [], readAt: null, error: null };
  }

  /** Reads the table once (its result handed on before this resolves), then follows it. */
  async start(): Promise<void> {
    await this.look();
    try {
      this.watcher = watch(dirname(this.file), (_, name) => {
        if (name === null || name === basename(this.file) || this.opts.server === 'ganesha') this.soon();
      });
      this.watcher.on('error', (err) => this.opts.log.warn({ err: err.message }, `watching ${dirname(this.file)}: ${err.message}; polling every ${this.opts.pollMs} ms only`));
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, `cannot watch ${dirname(this.file)} (${(err as Error).message}): polling every ${this.opts.pollMs} ms only`);
    }
    this.timer = setInterval(() => this.poke(), this.opts.pollMs);
    this.timer.unref();
  }

  close(): Promise<void> {
    this.closed = true;
    this.watcher?.close();
    clearInterval(this.timer);
    clearTimeout(this.settle);
    return this.looking ?? Promise.resolve();
  }

  /**
   * An inotify event: looks a moment later, once a burst of events is over (a writer that
   * truncates and then writes, where exportfs renames, must not be read empty in between).
   */
  private soon(): void {
    clearTimeout(this.settle);
    this.settle = setTimeout(() => this.poke(), SETTLE_MS);
  }

  /** Looks now, or once more after the look under way. */
  poke(): void {
    if (this.closed) return;
    if (this.looking) {
      this.again = true;
      return;
    }
    this.looking = this.look().finally(() => {
      this.looking = undefined;
      if (this.again) {
        this.again = false;
        this.poke();
      }
    });
  }

  /** Resolves once every look asked for so far is done. */
  async settled(): Promise<void> {
    while (this.looking) await this.looking;
  }

  private async look(): Promise<void> {
    const { server, log } = this.opts;
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // No etab: knfsd exports nothing (exportfs creates it with its first export).
      if (code !== 'ENOENT') return this.fail(`cannot read ${this.file}: ${(err as Error).message}`);
      text = '';
    }
    const mounts = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
    let result: { entries: ExportEntry[]; notes: string[] };
    try {
      if (server === 'knfsd') {
        const lines = parseEtab(text);
        const key = `${text}\0${mounts}`;
        if (key === this.seen && this.current.error === null && !this.absent) return;
        this.seen = key;
        const m = parseMountinfo(mounts);
        const paths = [...new Set(lines.map((l) => l.path))];
        const fs = new Map(await Promise.all(paths.map(async (p) => [p, await probe(p, m)] as const)));
        result = knfsdExports(lines, (p) => fs.get(p), await resolveNames(lines.map((l) => l.client)));
        this.absent = [...fs.values()].some((f) => f === undefined);
      } else {
        const reader = ganeshaReader(this.file);
        const blocks = reader.parse(text);
        const key = `${text}\0${[...reader.texts].join('\0')}\0${mounts}`;
        if (key === this.seen && this.current.error === null && !this.absent) return;
        this.seen = key;
        const clients = blocks.filter((b) => b.name === 'export').flatMap((e) => e.blocks.filter((c) => c.name === 'client').flatMap((c) => c.params.get('clients') ?? []));
        const all = ganeshaExports(blocks, await resolveNames(clients));
        // The same configuration on every node, the filesystems mounted where the service runs:
        // a path not here now is served once it is (the next look after its mount).
        const here = await Promise.all(all.entries.map((e) => stat(e.path).then(() => true, () => false)));
        this.absent = here.includes(false);
        result = { entries: all.entries.filter((_, i) => here[i]), notes: [...all.notes, ...all.entries.filter((_, i) => !here[i]).map((e) => `export ${e.ganeshaExportId} (${e.path}): not on this node (not mounted here?): served once it is`)] };
      }
    } catch (err) {
      const why = (err as Error).message;
      return this.fail(why.startsWith(this.file) ? why : `${this.file}: ${why}`);
    }
    if (this.closed) return;
    this.current = { server, file: this.file, ...result, readAt: new Date().toISOString(), error: null };
    const handed = JSON.stringify(result);
    if (handed === this.handed) return;
    this.handed = handed;
    for (const n of result.notes) log.warn({ file: this.file }, n);
    this.opts.onChange(this.current);
  }

  /** A table that cannot be read keeps the last one served: an exportfs half-way through must not unexport anything. */
  private fail(error: string): void {
    if (this.current.error !== error) this.opts.log.error({ file: this.file }, `${error}: keeping the exports read before`);
    this.current = { ...this.current, error };
    this.seen = '';
  }
}
