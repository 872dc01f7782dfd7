// A planned restart keeps every lock (issue 24): real lockdropd processes over a real tmpfs
// export, NLM clients locking and unlocking throughout, and this test process as the local
// locker probing the held ranges with F_OFD_SETLK every few milliseconds. Through `lockdropctl
// restart` (the daemon re-executes itself) and through systemd's file descriptor store protocol
// with this test as the manager (a unix datagram NOTIFY_SOCKET receiving FDSTORE=1 with
// SCM_RIGHTS, then the new process started with LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES). A
// snapshot cut off is refused as a whole: the new process starts as after a crash and says so.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, openSync, readdirSync, readFileSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { bindNotifySocket, memfdCreate, receiveNotify, type Notification } from '../../src/addon';
import { LOCK_UNLOCK, LOCK_WRITE, ofdSetLock } from '../../src/addon/files';
import type { StatusReport } from '../../src/control';
import { NlmClient } from '../../src/nlm';
import { HandOverError, SNAPSHOT_FDNAME, decodeSnapshot, encodeSnapshot, readHandOver } from '../../src/daemon/restart';
import { validateConfig } from '../../src/daemon/config';
import { DaemonProcess, LOCKDROPCTL, LOCKDROPD, daemonDir, daemonSuite, spawnDaemon } from '../daemon/harness';
import { knfsdHandle, makeFile, mountTmpfs } from '../files/support';

const FSID = 41;
const HELD = { offset: 0n, length: 100n };
const status = (d: DaemonProcess): StatusReport => JSON.parse(d.ctl(['status', '--json']).stdout) as StatusReport;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A local process's view: F_OFD_SETLK on the held ranges, every 2 ms; any success is a lock lost. */
function probe(files: string[]): { stop: () => { probes: number; taken: string[] } } {
  const fds = files.map((f) => openSync(f, 'r+'));
  let probes = 0;
  const taken: string[] = [];
  const timer = setInterval(() => {
    for (let i = 0; i < fds.length; i++) {
      probes++;
      if (ofdSetLock(fds[i]!, LOCK_WRITE, Number(HELD.offset), Number(HELD.length)) === 0) {
        taken.push(`${files[i]} at ${new Date().toISOString()}`);
        ofdSetLock(fds[i]!, LOCK_UNLOCK, 0, 0);
      }
    }
  }, 2);
  let stopped = false;
  return {
    stop: () => {
      clearInterval(timer);
      if (!stopped) closeQuietly(fds);
      stopped = true;
      return { probes, taken };
    },
  };
}

/** Kills a daemon and waits until it is gone (its open files with it: the export is unmounted next). */
async function reap(d: DaemonProcess): Promise<void> {
  d.cleanup();
  await d.exited;
}

/** Closes descriptors that may be closed already (a cleanup after a failed assertion). */
function closeQuietly(fds: Iterable<number>): void {
  for (const fd of fds) {
    try {
      closeSync(fd);
    } catch {
      // closed already
    }
  }
}

/** Another client locking and unlocking its own ranges in a loop: its slowest call and its failures. */
function load(c: NlmClient, fh: Buffer): { stop: () => Promise<{ ops: number; failures: string[]; maxMs: number; retries: number }> } {
  let running = true;
  let ops = 0;
  let maxMs = 0;
  const failures: string[] = [];
  let retries = 0;
  // As a kernel client does over UDP: a port unreachable while the sockets change hands is retried.
  const retried = async <T>(call: () => Promise<T>): Promise<T> => {
    for (;;) {
      try {
        return await call();
      } catch (err) {
        if (!/ECONNREFUSED/.test((err as Error).message) || !running) throw err;
        retries++;
        await sleep(10);
      }
    }
  };
  const loop = (async () => {
    for (let i = 0; running; i++) {
      const t0 = performance.now();
      const range = { fh, svid: 7, offset: BigInt(1000 + (i % 50)), length: 1n };
      try {
        const r = await retried(() => c.lock({ ...range, exclusive: true }));
        if (r.status !== 'granted') failures.push(`lock: ${r.status}`);
        const u = await retried(() => c.unlock(range));
        if (u.status !== 'granted') failures.push(`unlock: ${u.status}`);
      } catch (err) {
        failures.push((err as Error).message);
      }
      maxMs = Math.max(maxMs, performance.now() - t0);
      ops++;
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { ops, failures, maxMs, retries };
    },
  };
}

/** The daemon's pid answering status now (the new one after a restart). */
async function newPid(d: DaemonProcess, old: number): Promise<number> {
  for (let i = 0; i < 400; i++) {
    const r = d.ctl(['status', '--json']);
    if (r.code === 0) {
      const s = JSON.parse(r.stdout) as StatusReport;
      if (s.pid !== old && s.ready) return s.pid;
    }
    await sleep(50);
  }
  throw new Error('no new lockdropd answered');
}

/** Receives what a lockdropd sends to its manager until `until` says stop: FDSTORE descriptors by name, and every message. */
async function manager(sock: number, until: (m: Notification[]) => boolean, timeoutMs = 20_000): Promise<{ stored: Map<string, number>; messages: Notification[] }> {
  const stored = new Map<string, number>();
  const messages: Notification[] = [];
  const end = Date.now() + timeoutMs;
  while (!until(messages)) {
    if (Date.now() > end) throw new Error(`the manager saw ${messages.length} messages, not the awaited one: ${messages.slice(-3).map((m) => m.message).join(' | ')}`);
    for (let m = receiveNotify(sock); m; m = receiveNotify(sock)) {
      messages.push(m);
      const lines = m.message.split('\n');
      const name = lines.find((l) => l.startsWith('FDNAME='))?.slice(7);
      if (lines.includes('FDSTORE=1') && name !== undefined) for (const fd of m.fds) stored.set(name, fd);
    }
    await sleep(5);
  }
  return { stored, messages };
}

/** Starts lockdropd as systemd does with a file descriptor store: the descriptors from fd 3, LISTEN_PID its own pid. */
function startWithDescriptors(dir: string, args: string[], env: NodeJS.ProcessEnv, names: string[], fds: number[]): DaemonProcess {
  const control = join(dir, 'run', 'control.sock');
  const full = ['--state-dir', join(dir, 'state'), '--control', control, '--rpcbind', 'off', '--sources', 'poll', '--poll-interval', '0.2', '--config', join(dir, 'lockdrop.yaml'), ...args];
  const child = spawn('/bin/sh', ['-c', 'LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"', process.execPath, LOCKDROPD, ...full], {
    stdio: ['ignore', 'pipe', 'pipe', ...fds],
    env: { ...process.env, ...env, LISTEN_FDS: String(fds.length), LISTEN_FDNAMES: names.join(':') },
  });
  return new DaemonProcess(child, dir, control);
}

describe('restart: a planned restart keeps every lock', function () {
  this.timeout(120_000);
  const cleanups = daemonSuite();

  /** A tmpfs export with four files held by client x, a fifth for client y's load, and the two clients. */
  async function scene(d: DaemonProcess, dir: string): Promise<{ x: NlmClient; y: NlmClient; held: string[]; fhs: Buffer[]; port: number }> {
    const port = (await d.started()).nlmPort as number;
    const held = [0, 1, 2, 3].map((i) => makeFile(dir, `held${i}`));
    const fhs = held.map((f) => knfsdHandle(f, FSID));
    const x = await NlmClient.create({ server: { address: '127.0.0.1', port }, transport: 'tcp', vers: 4, callerName: 'client-x' });
    const y = await NlmClient.create({ server: { address: '127.0.0.1', port }, transport: 'udp', vers: 4, callerName: 'client-y' });
    cleanups.push(() => x.close(), () => y.close());
    for (const fh of fhs) assert.equal((await x.lock({ fh, svid: 1, exclusive: true, ...HELD })).status, 'granted');
    return { x, y, held, fhs, port };
  }

  it('lockdropctl restart under load: no lock lost, no probe taking a held range, same port, no grace, no SM_NOTIFY', async () => {
    const m = mountTmpfs();
    cleanups.push(() => m.dispose());
    const d = spawnDaemon(['--grace', '30'], { config: { exports: [{ path: m.dir, fsid: FSID, secure: false, rootSquash: false }] } });
    cleanups.push(() => reap(d));
    const { x, y, held, fhs, port } = await scene(d, m.dir);
    const oldPid = status(d).pid;
    const p = probe(held);
    cleanups.push(() => p.stop());
    const l = load(y, knfsdHandle(makeFile(m.dir, 'load'), FSID));
    await sleep(300);
    const t0 = performance.now();
    const out = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, [LOCKDROPCTL, 'restart', '--json', '--control', d.control], { timeout: 60_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(stdout))),
    );
    const restartMs = performance.now() - t0;
    const pid = await newPid(d, oldPid);
    cleanups.push(() => killAndWait(pid));
    await sleep(300);
    const loadResult = await l.stop();
    const probed = p.stop();
    const code = await d.exited;
    if (code !== 0) process.stdout.write(d.logs.map((l) => `${l.pid} ${l.msg}`).join('\n') + d.stderr);
    assert.equal(code, 0, 'the old lockdropd exits cleanly once the new one is ready');
    const r = JSON.parse(out) as { from: number; pid: number; ms: number; locks: number };
    assert.equal(r.from, oldPid);
    assert.equal(r.pid, pid);
    assert.deepEqual(probed.taken, [], 'no probe ever took a held range');
    assert.ok(probed.probes > 100, `probed throughout (${probed.probes})`);
    assert.deepEqual(loadResult.failures, [], 'the other client saw no refusal');
    assert.ok(loadResult.ops > 10);
    const s = status(d);
    assert.equal(s.nlmPort, port, 'the same NLM port');
    assert.equal(s.locks, 4, "client x's four locks");
    assert.equal(s.globalGrace, null);
    assert.deepEqual(s.addresses.filter((a) => a.grace !== null), [], 'no address in grace');
    const taken = await d.waitLog((l) => /^planned restart: \d+ locks and 0 shares .* taken back/.test(l.msg));
    assert.equal(taken.pid, pid);
    assert.equal(d.logs.filter((l) => l.pid === pid && /^nsm: notifying|^node: SM_NOTIFY|notifying [1-9]|grace until/.test(l.msg)).length, 0, 'no SM_NOTIFY, no grace');
    // The new process owns the descriptions: an unlock through it frees the range for the local process.
    assert.equal((await x.unlock({ fh: fhs[0]!, svid: 1, ...HELD })).status, 'granted');
    const fd = openSync(held[0]!, 'r+');
    assert.equal(ofdSetLock(fd, LOCK_WRITE, 0, 100), 0, 'released by the new process');
    closeSync(fd);
    assert.equal((await x.lock({ fh: fhs[1]!, svid: 2, exclusive: true, ...HELD })).status, 'denied', 'held by svid 1 still');
    process.stdout.write(`      restart ${restartMs.toFixed(0)} ms (lockdropctl), slowest LOCK+UNLOCK during it ${loadResult.maxMs.toFixed(0)} ms over ${loadResult.ops} ops (${loadResult.retries} retried after a port unreachable), ${probed.probes} probes\n`);
  });

  it("through the file descriptor store protocol, driven as systemd does; a snapshot cut off is refused: a crash's start, nothing left in the store", async () => {
    const m = mountTmpfs();
    cleanups.push(() => m.dispose());
    const dir = daemonDir();
    const notify = join(dir, 'notify.sock');
    const sock = bindNotifySocket(notify);
    cleanups.push(() => closeSync(sock));
    const config = { exports: [{ path: m.dir, fsid: FSID, secure: false, rootSquash: false }] };
    const d = spawnDaemon(['--grace', '30', '--fd-store'], { dir, config, env: { NOTIFY_SOCKET: notify } });
    cleanups.push(() => reap(d));
    const { y, held, fhs } = await scene(d, m.dir);
    await manager(sock, (ms) => ms.some((n) => n.message.includes('READY=1')));
    const p = probe(held);
    cleanups.push(() => p.stop());
    const l = load(y, knfsdHandle(makeFile(m.dir, 'load'), FSID));
    await sleep(200);
    const t0 = performance.now();
    d.child.kill('SIGTERM');
    const [store] = await Promise.all([manager(sock, () => d.child.exitCode !== null), d.exited]);
    assert.equal(d.child.exitCode, 0);
    cleanups.push(() => closeQuietly([...store.stored.values()]));
    // The load client's lock may have been in flight at the SIGTERM: its description goes too.
    assert.ok(store.stored.size === 5 || store.stored.size === 6, `the snapshot and four or five descriptions: ${store.stored.size}`);
    assert.ok(store.stored.has(SNAPSHOT_FDNAME));
    const names = [...store.stored.keys()];
    const fds = names.map((n) => store.stored.get(n)!);
    const next = startWithDescriptors(dir, ['--grace', '30', '--fd-store'], { NOTIFY_SOCKET: notify }, names, fds);
    cleanups.push(() => reap(next));
    const after = await manager(sock, (ms) => ms.some((n) => n.message.includes('READY=1')));
    const restartMs = performance.now() - t0;
    const removed = new Set(after.messages.filter((n) => n.message.includes('FDSTOREREMOVE=1')).map((n) => n.message.split('\n').find((s) => s.startsWith('FDNAME='))!.slice(7)));
    assert.deepEqual([...removed].sort(), [...names].sort(), 'the new process took every descriptor out of the store');
    // As systemd does on FDSTOREREMOVE: the manager's copies close. The new process's hold the locks.
    closeQuietly(fds);
    await sleep(200);
    const loadResult = await l.stop();
    const probed = p.stop();
    if (probed.taken.length) process.stdout.write(`${probed.taken[0]}\n` + [...d.logs, ...next.logs].map((l) => `${l.time} ${l.pid} ${l.msg}`).join('\n') + d.stderr + next.stderr);
    assert.deepEqual(probed.taken.length, 0, 'no probe ever took a held range');
    assert.deepEqual(loadResult.failures, []);
    const s = status(next);
    assert.equal(s.locks, 4);
    assert.deepEqual(s.addresses.filter((a) => a.grace !== null), [], 'no address in grace');
    await next.waitLog((l) => /^planned restart: \d+ locks and 0 shares .* taken back/.test(l.msg));
    assert.equal(next.logs.filter((l) => /^nsm: notifying|^node: SM_NOTIFY|notifying [1-9]|grace until/.test(l.msg)).length, 0, 'no SM_NOTIFY, no grace');
    process.stdout.write(`      restart ${restartMs.toFixed(0)} ms (fd store: SIGTERM to READY=1), slowest LOCK+UNLOCK during it ${loadResult.maxMs.toFixed(0)} ms over ${loadResult.ops} ops (${loadResult.retries} retried)\n`);

    // Again, but the manager hands back a snapshot cut off: refused as a whole.
    next.child.kill('SIGTERM');
    const again = await manager(sock, () => next.child.exitCode !== null);
    await next.exited;
    const snap = again.stored.get(SNAPSHOT_FDNAME)!;
    const size = fstatSync(snap).size;
    const bytes = Buffer.alloc(size);
    readSync(snap, bytes, 0, size, 0);
    const cut = memfdCreate('cut');
    writeSync(cut, bytes, 0, size - 7);
    closeSync(snap);
    again.stored.set(SNAPSHOT_FDNAME, cut);
    const names2 = [...again.stored.keys()];
    const fds2 = names2.map((n) => again.stored.get(n)!);
    const third = startWithDescriptors(dir, ['--grace', '30', '--fd-store'], { NOTIFY_SOCKET: notify }, names2, fds2);
    cleanups.push(() => reap(third));
    const after3 = await manager(sock, (ms) => ms.some((n) => n.message.includes('READY=1')));
    closeQuietly(fds2);
    const refused = await third.waitLog((l) => /^planned restart: the hand-over cannot be used \(the snapshot is cut off/.test(l.msg));
    assert.equal(refused.level, 50);
    const removed3 = new Set(after3.messages.filter((n) => n.message.includes('FDSTOREREMOVE=1')).map((n) => n.message.split('\n').find((s) => s.startsWith('FDNAME='))!.slice(7)));
    assert.deepEqual([...removed3].sort(), [...names2].sort(), 'nothing of the refused hand-over stays in the store');
    // A crash's start: the node's hosts are told (grace on its addresses) and x reclaims its locks.
    const s3 = status(third);
    assert.equal(s3.locks, 0);
    assert.ok(s3.addresses.some((a) => a.address === '127.0.0.1' && a.grace !== null), 'loopback in grace, as after a crash');
    // On new ports (the refused snapshot's are not trusted either): the client finds them again, as through rpcbind.
    const x3 = await NlmClient.create({ server: { address: '127.0.0.1', port: s3.nlmPort }, transport: 'tcp', vers: 4, callerName: 'client-x' });
    cleanups.push(() => x3.close());
    for (const fh of fhs.slice(1)) assert.equal((await x3.lock({ fh, svid: 1, exclusive: true, reclaim: true, ...HELD })).status, 'granted', 'reclaimed in grace');
  });
});

describe('restart: hand-over input', () => {
  it('a snapshot cut off, altered or of another version is a HandOverError; a descriptor of another file is refused', () => {
    const snap = { version: 1, pid: 1, at: 0, ports: { nlm: 1, nsm: 2 }, floating: [], graces: [], descriptions: [], locks: [], shares: [] };
    const b = encodeSnapshot(snap);
    assert.deepEqual(decodeSnapshot(b), snap);
    assert.throws(() => decodeSnapshot(b.subarray(0, b.length - 1)), HandOverError);
    assert.throws(() => decodeSnapshot(Buffer.alloc(3)), /no header/);
    const altered = Buffer.from(b);
    altered[altered.length - 2] ^= 1;
    assert.throws(() => decodeSnapshot(altered), /checksum/);
    assert.throws(() => decodeSnapshot(encodeSnapshot({ ...snap, version: 9 })), /version 9/);
    // A description whose descriptor names another file than the snapshot says.
    const tmp = mountTmpfsLess();
    const fd = openSync(tmp.a, 'r');
    const st = fstatSync(fd, { bigint: true });
    const mem = memfdCreate('snap');
    writeSync(mem, encodeSnapshot({ ...snap, descriptions: [{ name: 'lockdrop-d0', fileKey: '00', ownerKey: 'o', writable: false, exportPath: '/x', dev: String(st.dev), ino: String(st.ino + 1n) }] }));
    const cfg = validateConfig({ exports: [{ path: '/x', fsid: 1 }] }, 'test');
    const inh = { byName: new Map([[SNAPSHOT_FDNAME, mem], ['lockdrop-d0', fd]]), all: [mem, fd] };
    assert.throws(() => readHandOver(inh, cfg), /is not the file the snapshot names/);
    assert.throws(() => readHandOver({ byName: new Map([[SNAPSHOT_FDNAME, mem]]), all: [mem] }, cfg), /lockdrop-d0 was not passed/);
    closeSync(fd);
    closeSync(mem);
  });
});

/** SIGKILL to a lockdropd this test did not start itself (the re-executed one), waiting until its files are closed. */
/** The process's open fds; 0 once its fd table is gone. */
function openFds(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

async function killAndWait(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  for (let i = 0; i < 250; i++) {
    try {
      // A zombie leader may still have threads exiting (an OFD wait's, libuv's) that hold its
      // files: gone only once its fd table is.
      if (/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8')) && openFds(pid) === 0) return;
    } catch {
      return;
    }
    await sleep(20);
  }
}

/** Two small files in the test's temporary directory (no mount needed). */
function mountTmpfsLess(): { a: string } {
  const dir = daemonDir();
  return { a: makeFile(dir, `f-${randomBytes(3).toString('hex')}`) };
}
