// Real files for the benchmarks: namespaces of the benchmark's own (a tmpfs mounted there is gone
// with the process), files on that tmpfs with their knfsd handles, and the files part over the
// export exactly as lockdropd opens it (openDaemonFiles: RLIMIT_NOFILE raised, the budget).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addonStatus } from '../src/addon';
import { nameToHandle } from '../src/addon/files';
import { validateConfig } from '../src/daemon/config';
import { openDaemonFiles } from '../src/daemon/files';
import { ExportsTable, knfsdHandle } from '../src/exports';
import type { ExportedFiles } from '../src/files';

const INSIDE = 'LOCKDROP_BENCH_NS';

/** Whether real-file runs can happen: root (mounts, CAP_DAC_READ_SEARCH) and the native addon. */
export function realFilesUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (a tmpfs in a private mount namespace, open_by_handle_at)';
  const addon = addonStatus();
  return addon.available ? undefined : `needs the native addon: ${addon.reason}`;
}

/**
 * Runs this script again inside new namespaces (a mount namespace is private: mounts made there
 * vanish with it); returns only inside them. Without root, returns at once (the caller skips
 * what needs it). RLIMIT_NOFILE is raised inside by openDaemonFiles, as in lockdropd.
 */
export function reexecInNamespaces(kinds: ('net' | 'mount')[]): void {
  if (process.env[INSIDE] === '1' || process.getuid?.() !== 0) return;
  try {
    execFileSync('unshare', [...kinds.map((k) => `--${k}`), '--', 'env', `${INSIDE}=1`, process.execPath, ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
  } catch (err) {
    process.exit((err as { status?: number }).status ?? 1);
  }
  process.exit(0);
}

export interface BenchExport {
  dir: string;
  fsid: number;
  exports: ExportsTable;
  files: ExportedFiles;
  /** knfsd handles of `count` files made on the export (name prefix + index). */
  handles(prefix: string, count: number): Buffer[];
}

/** A tmpfs export (fsid `fsid`) locked on its files, as lockdropd serves one. Needs reexecInNamespaces(['mount', …]). */
export function tmpfsExport(fsid = 7): BenchExport {
  if (process.env[INSIDE] !== '1') throw new Error('tmpfsExport: run inside reexecInNamespaces([\'mount\'])');
  const dir = mkdtempSync(join(tmpdir(), 'lockdrop-bench-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m,nr_inodes=0', 'lockdrop-bench', dir]);
  const cfg = validateConfig({ exports: [{ path: dir, fsid }] }, 'bench');
  const exports = new ExportsTable(cfg.exports, { byteOrder: cfg.fhByteOrder, unknownHandles: cfg.unknownHandles });
  const log = { warn: (o: object, m: string) => console.error(m, o), error: (o: object, m: string) => console.error(m, o) };
  const { files } = openDaemonFiles(cfg, () => exports, log);
  if (!files) throw new Error('the native addon is not available: real files cannot be locked');
  return {
    dir,
    fsid,
    exports,
    files,
    handles: (prefix, count) => Array.from({ length: count }, (_, i) => {
      const path = join(dir, `${prefix}${i}`);
      writeFileSync(path, '');
      return knfsdHandle(fsid, nameToHandle(path));
    }),
  };
}

/** Open descriptors of this process, of every kind. */
export const fdsOpen = (): number => readdirSync('/proc/self/fd').length;
