// The native file edge (issue 10): µs per openByHandle + ofdSetLock(write) + unlock + close cycle
// on tmpfs and on ext4 (an image on a loop device), µs per ofdSetLock alone, and the wait pool:
// grant latency (holder lets go → done(0)), cancel latency (ofdCancelWait → done), and the cost
// of starting and cancelling 1000 waits at once (a thread each).
// Runs as root in its own mount namespace (it re-executes itself under unshare).
// Run: npx tsx bench/files.ts [cycles]
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  closeFd, errnoName, nameToHandle, ofdCancelAll, ofdCancelWait, ofdSetLock, ofdWait, openByHandle, openPath, setWaitPoolSize, LOCK_UNLOCK, LOCK_WRITE,
} from '../src/addon';
import { mountExt4, mountTmpfs, type Mounted } from '../test/support/files';

const cycles = Number(process.argv[2] ?? 200000);

function timeIt(n: number, body: (i: number) => void): number {
  for (let i = 0; i < Math.min(n, 10000); i++) body(i); // warm up
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) body(i);
  return Number(process.hrtime.bigint() - t) / 1000 / n;
}

function check(what: string, rc: number): number {
  if (rc < 0) throw new Error(`${what}: ${errnoName(rc)}`);
  return rc;
}

function fileCycles(fs: Mounted, kind: string): void {
  const files = Array.from({ length: 100 }, (_, i) => {
    const path = join(fs.dir, `f${i}`);
    writeFileSync(path, '');
    return nameToHandle(path);
  });
  const root = openPath(fs.dir);
  const us = timeIt(cycles, (i) => {
    const h = files[i % files.length]!;
    const fd = check('openByHandle', openByHandle(root, h.type, h.handle, 'rw'));
    check('lock', ofdSetLock(fd, LOCK_WRITE, 0, 0));
    check('unlock', ofdSetLock(fd, LOCK_UNLOCK, 0, 0));
    closeFd(fd);
  });
  console.log(`${kind}: openByHandle + lock + unlock + close: ${us.toFixed(2)} µs/cycle`);
  const openClose = timeIt(cycles, (i) => {
    const h = files[i % files.length]!;
    closeFd(check('openByHandle', openByHandle(root, h.type, h.handle, 'rw')));
  });
  console.log(`${kind}: openByHandle + close alone: ${openClose.toFixed(2)} µs/cycle`);
  const fd = check('openByHandle', openByHandle(root, files[0]!.type, files[0]!.handle, 'rw'));
  const one = timeIt(cycles * 2, (i) => check('setLock', ofdSetLock(fd, i & 1 ? LOCK_UNLOCK : LOCK_WRITE, 100, 10)));
  console.log(`${kind}: ofdSetLock alone (lock and unlock alternating): ${one.toFixed(2)} µs/call`);
  closeFd(fd);
  closeFd(root);
}

const quantile = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;

async function waitLatencies(fs: Mounted): Promise<void> {
  const path = join(fs.dir, 'waited');
  writeFileSync(path, '');
  const holder = openSync(path, 'r+');
  const waiter = openSync(path, 'r+');
  const grant: number[] = [];
  const cancel: number[] = [];
  const keepAlive = setInterval(() => {}, 1000); // pending waits do not keep the process alive
  for (let i = 0; i < 500; i++) {
    check('hold', ofdSetLock(holder, LOCK_WRITE, 0, 0));
    let at = 0;
    const done = new Promise<number>((resolve) => check('ofdWait', ofdWait(waiter, LOCK_WRITE, 0, 0, (r) => { at = performance.now(); resolve(r); })));
    await new Promise((r) => setTimeout(r, 1));
    const released = performance.now();
    check('release', ofdSetLock(holder, LOCK_UNLOCK, 0, 0));
    check('granted', await done);
    grant.push((at - released) * 1000);
    check('release', ofdSetLock(waiter, LOCK_UNLOCK, 0, 0));

    check('hold', ofdSetLock(holder, LOCK_WRITE, 0, 0));
    let id = 0;
    const cancelled = new Promise<number>((resolve) => (id = check('ofdWait', ofdWait(waiter, LOCK_WRITE, 0, 0, (r) => { at = performance.now(); resolve(r); }))));
    await new Promise((r) => setTimeout(r, 1));
    const asked = performance.now();
    ofdCancelWait(id);
    if ((await cancelled) !== -125) throw new Error('cancel did not cancel');
    cancel.push((at - asked) * 1000);
    check('release', ofdSetLock(holder, LOCK_UNLOCK, 0, 0));
  }
  setWaitPoolSize(1000);
  check('hold', ofdSetLock(holder, LOCK_WRITE, 0, 0));
  const t = performance.now();
  let left = 1000;
  const all = new Promise<void>((resolve) => {
    for (let i = 0; i < 1000; i++) check('ofdWait', ofdWait(waiter, LOCK_WRITE, 0, 0, () => --left === 0 && resolve()));
  });
  const started = performance.now();
  ofdCancelAll();
  await all;
  console.log(`1000 waits: started in ${(started - t).toFixed(1)} ms, all cancelled and delivered ${(performance.now() - started).toFixed(1)} ms later`);
  check('release', ofdSetLock(holder, LOCK_UNLOCK, 0, 0));
  clearInterval(keepAlive);
  closeSync(holder);
  closeSync(waiter);
  console.log(`ofdWait: release → done(0) p50 ${quantile(grant, 0.5).toFixed(0)} µs p99 ${quantile(grant, 0.99).toFixed(0)} µs; ofdCancelWait → done(-ECANCELED) p50 ${quantile(cancel, 0.5).toFixed(0)} µs p99 ${quantile(cancel, 0.99).toFixed(0)} µs (500 each)`);
}

async function main(): Promise<void> {
  if (process.env.LOCKDROP_BENCH_NS !== '1') {
    execFileSync('unshare', ['--mount', '--propagation', 'private', '--', 'env', 'LOCKDROP_BENCH_NS=1', process.execPath, ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
    return;
  }
  console.log(`${cycles} cycles per case; load average ${execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).split(' ').slice(0, 3).join(' ')}`);
  const tmpfs = mountTmpfs();
  const ext4 = mountExt4();
  try {
    fileCycles(tmpfs, 'tmpfs');
    fileCycles(ext4, 'ext4');
    await waitLatencies(tmpfs);
  } finally {
    tmpfs.dispose();
    ext4.dispose();
  }
}

void main();
