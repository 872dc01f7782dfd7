// Files known by identity (issue 21.9): CPU per LOCK + UNLOCK of a file the table does not have
// yet, through ExportedFiles on tmpfs, with FileLocker.identify (the table looks an unknown
// handle up by its file's identity) and without it (by the handle's bytes only), rounds
// alternated in one process so that both meet the same load.
// Run: npx tsx bench/file-identity.ts [files] — as root (open_by_handle_at), on a folder of /dev/shm (tmpfs).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { nameToHandle } from '../src/addon/files';
import { ExportsTable, knfsdHandle } from '../src/exports';
import { ExportedFiles } from '../src/files';
import { nativeFileSyscalls } from '../src/files/native';
import { LockTable, hostKey } from '../src/locks';

const N = Number(process.argv[2] ?? 2000);
const dir = mkdtempSync('/dev/shm/lockdrop-identity-');
const exports = new ExportsTable([{ path: dir, fsid: 5, clients: [], secure: false, fileLocks: true }]);
const fhs = Array.from({ length: N }, (_, i) => {
  const p = `${dir}/f${i}`;
  writeFileSync(p, '');
  return knfsdHandle(5, nameToHandle(p));
});
const req = (fh: Buffer, svid: number) => ({ fh, owner: { host: hostKey('c', '10.0.0.1'), svid, oh: Buffer.from('o') }, exclusive: true, offset: 0n, length: 1n, serverAddress: '10.0.0.9' });
const NB = { block: false, reclaim: false };

function setup(identify: boolean): { table: LockTable; files: ExportedFiles } {
  const files = new ExportedFiles({ sys: nativeFileSyscalls, kernelHandle: (fh) => exports.kernelHandle(fh), maxOpen: 100_000 });
  files.setExports([{ path: dir, fileLocks: true }]);
  if (!identify) (files as { identify?: unknown }).identify = undefined;
  const table = new LockTable({ locker: files, exportOf: (fh) => exports.exportOf(fh) });
  table.lock(req(fhs[0]!, 99), NB); // never an empty table
  return { table, files };
}

const runs = { on: setup(true), off: setup(false) };
const samples: Record<'on' | 'off', number[]> = { on: [], off: [] };
for (let round = 0; round < 12; round++) {
  const mode = round % 2 === 0 ? 'on' : 'off';
  const { table } = runs[mode];
  const t0 = process.cpuUsage();
  for (let i = 1; i < N; i++) {
    table.lock(req(fhs[i]!, 1), NB);
    table.unlock(req(fhs[i]!, 1));
  }
  const u = process.cpuUsage(t0);
  if (round >= 2) samples[mode].push((u.user + u.system) / (N - 1));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`LOCK+UNLOCK of a new file, µs CPU (median of ${samples.on.length}): identify ${median(samples.on).toFixed(2)}, bytes only ${median(samples.off).toFixed(2)}`);
for (const r of Object.values(runs)) r.files.setExports([]);
rmSync(dir, { recursive: true, force: true });
