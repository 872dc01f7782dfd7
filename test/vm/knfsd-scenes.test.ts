// lockdrop as the NLM and statd of a knfsd server, against the kernel's own NFS client: two guests
// of Debian's kernel on one bridge. The server exports an ext4 filesystem with default options
// (no fsid=: knfsd names it by the filesystem's uuid) and runs lockdropd with `exportsFrom: knfsd`
// and no `exports:` list, the kernel's lockd displaced as docs/cluster.md's "Beside knfsd" says;
// the client mounts the export with vers=3 and vers=4.2. Each guest boots once; every scene runs
// in that boot. With LOCKDROP_VM_KNFSD_ANCHOR=kernel the same scenes run against the kernel's own
// lockd and rpc.statd instead (the anchor: how knfsd alone behaves), lockdrop-only checks skipped.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { LockView } from '../../src/control';
import { hasCommand, inTestNamespace, isRoot, sh } from '../support/netns';
import { Guest, REPO, buildInitramfs, findKernel, type GuestOptions, type Holder, type Kernel } from './vm';

const SUBNET = '10.80.0';
const SERVER = `${SUBNET}.1`;
const CLIENT = `${SUBNET}.21`;
const CLIENT_NAME = 'vmclient';
const EXPORT = '/srv/export';
const CTL = '/run/lockdrop/control.sock';
const BASE = ['virtio_pci', 'virtio_net', 'virtio_console', '9pnet_virtio', '9p', 'overlay'];
const SERVER_MODULES = [...BASE, 'virtio_blk', 'crc32c_generic', 'ext4', 'nfsd'];
const CLIENT_MODULES = [...BASE, 'nfsv3', 'nfsv4'];
const FILES = ['data', 'deleg', 'gone'];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const within = <T>(p: Promise<T>, ms: number): Promise<T | 'pending'> => Promise.race([p, sleep(ms).then(() => 'pending' as const)]);

/** Polls until check() returns a value (not undefined), or throws what it last saw. */
async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number, everyMs = 500): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
      last = undefined;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (${String(last)})` : ''}`);
    await sleep(everyMs);
  }
}

const anchor = process.env.LOCKDROP_VM_KNFSD_ANCHOR === 'kernel' ? 'kernel' : 'lockdrop';

describe(`vm: a knfsd server with ${anchor === 'kernel' ? "the kernel's own lockd (the anchor)" : 'lockdropd as its NLM and statd'}, and the kernel NFS client (vers=3 and 4.2)`, function () {
  this.timeout(120_000);
  const netns = `ldk${process.pid % 10000}`;
  let work: string | undefined;
  let server: Guest | undefined;
  let client: Guest | undefined;
  let clientOpts: GuestOptions;
  const boots: Guest[] = [];
  let broken: string | undefined;
  const holders: Record<string, Holder> = {};
  const figures: Record<string, unknown> = { anchor };
  /** The pid of scene 4's reader in the client. */
  let reader = '';
  const ino: Record<string, string> = {};

  const srv = async (cmd: string, timeoutMs = 30_000): Promise<string> => {
    const r = await server!.agent.sh(cmd, timeoutMs);
    if (r.rc !== 0) throw new Error(`server: ${cmd}: rc ${r.rc}: ${r.out.trim()}`);
    return r.out;
  };
  const cli = async (cmd: string, timeoutMs = 30_000): Promise<string> => {
    const r = await client!.agent.sh(cmd, timeoutMs);
    if (r.rc !== 0) throw new Error(`client: ${cmd}: rc ${r.rc}: ${r.out.trim()}`);
    return r.out;
  };
  const locks = async (): Promise<LockView[]> =>
    (await srv(`node ${REPO}/bin/lockdropctl --control ${CTL} locks --json`, 60_000)).split('\n').filter(Boolean).map((l) => JSON.parse(l) as LockView);
  /** The server's /proc/locks lines on one file of the export: "OFDLCK WRITE 0 99" and the like. */
  const procLocks = async (file: string): Promise<string[]> =>
    (await srv('cat /proc/locks')).split('\n').map((l) => l.trim().split(/\s+/)).filter((f) => f[5]?.endsWith(`:${ino[file]}`))
      .map((f) => `${f[1]} ${f[3]} ${f[6]} ${f[7]}`).sort();
  const holder = async (g: Guest, name: string, file: string): Promise<Holder> => (holders[name] = await g.agent.holder(name, file));

  /** A scene runs only while the ones before it passed: each builds on the last. */
  const scene = (title: string, fn: (this: Mocha.Context) => Promise<void>): void => {
    it(title, async function () {
      if (broken) {
        process.stdout.write(`      (not run: the scene "${broken}" failed)\n`);
        this.skip();
      }
      try {
        await fn.call(this);
      } catch (err) {
        broken = title;
        throw err;
      }
    });
  };

  before(async function () {
    this.timeout(400_000);
    // Minutes of two emulated guests: run by `npm run test:vm`, not in the whole suite.
    if (!process.env.LOCKDROP_VM_KNFSD) return this.skip();
    if (!isRoot() || !inTestNamespace()) return this.skip();
    const kernel = findKernel();
    if (typeof kernel === 'string') return this.skip();
    const missing = ['qemu-system-x86_64', 'rpc.nfsd', 'rpc.mountd', 'exportfs', 'rpcbind', 'rpc.statd', 'sm-notify', 'mount.nfs', 'mkfs.ext4', 'perl'].filter((c) => !hasCommand(c));
    if (missing.length) throw new Error(`missing: ${missing.join(', ')} (bash scripts/setup.sh installs them as root)`);
    work = mkdtempSync(path.join(tmpdir(), 'lockdrop-knfsd-scenes-'));
    const serverInitrd = path.join(work, 'server.cpio');
    const clientInitrd = path.join(work, 'client.cpio');
    buildInitramfs(kernel as Kernel, serverInitrd, SERVER_MODULES);
    buildInitramfs(kernel as Kernel, clientInitrd, CLIENT_MODULES);
    // The exported filesystem: ext4 as mkfs.ext4 makes it by default, its files writable by the
    // squashed root of the client (the export keeps root_squash, a default option).
    const content = path.join(work, 'content');
    mkdirSync(content);
    for (const f of FILES) {
      writeFileSync(path.join(content, f), Buffer.alloc(4096, 'x'));
      chmodSync(path.join(content, f), 0o666);
    }
    const image = path.join(work, 'export.img');
    sh('truncate', ['-s', '64M', image]);
    sh('mkfs.ext4', ['-q', '-F', '-d', content, image]);

    sh('ip', ['netns', 'add', netns]);
    sh('ip', ['-n', netns, 'link', 'add', 'br0', 'type', 'bridge']);
    sh('ip', ['-n', netns, 'link', 'set', 'br0', 'up']);
    const state = (name: string): string => {
      const d = path.join(work!, name);
      mkdirSync(d);
      return d;
    };
    server = await Guest.boot({
      kernel: kernel as Kernel, initrd: serverInitrd, netns, bridge: 'br0', tap: 'tapsrv0', mac: '52:54:00:4c:44:01', hostname: 'knfsd',
      address: `${SERVER}/24`, server: SERVER, exportPath: EXPORT, nfsState: state('server-nfs'), workDir: state('server'),
      boot: 'knfsd-server-boot.sh', disk: image, memoryMb: 1024, ...(anchor === 'kernel' ? { append: ['lockdrop.anchor=kernel'] } : {}),
    });
    boots.push(server);
    clientOpts = {
      kernel: kernel as Kernel, initrd: clientInitrd, netns, bridge: 'br0', tap: 'tapcli0', mac: '52:54:00:4c:44:15', hostname: CLIENT_NAME,
      address: `${CLIENT}/24`, server: SERVER, exportPath: EXPORT, nfsState: state('client-nfs'), workDir: state('client'),
    };
    client = await Guest.boot(clientOpts);
    boots.push(client);
    await cli(`mkdir -p /mnt/nfs4 && mount -t nfs -o vers=4.2,hard,timeo=100 ${SERVER}:/${path.basename(EXPORT)} /mnt/nfs4`, 90_000).catch(async (err: Error) => {
      const why = await server!.agent.sh('tail -20 /run/mountd.log; cat /var/lib/nfs/etab; dmesg | tail -5', 20_000);
      throw new Error(`${err.message}\nserver: ${why.out}`);
    });
    for (const f of FILES) ino[f] = (await srv(`stat -c %i ${EXPORT}/${f}`)).trim();
  });

  after(async function () {
    this.timeout(60_000);
    if (process.env.LOCKDROP_VM_VERBOSE && server) {
      const log = await server.agent.sh('cat /run/lockdropd.log', 10_000).catch(() => undefined);
      if (log) process.stdout.write(log.out.split('\n').map((l) => `      server: ${l}`).join('\n'));
    }
    if (Object.keys(figures).length > 1) process.stdout.write(`      figures: ${JSON.stringify(figures)}\n`);
    for (const g of boots) await g.crash();
    sh('ip', ['netns', 'del', netns], { allowFail: true });
    if (work && !process.env.LOCKDROP_VM_KEEP) rmSync(work, { recursive: true, force: true });
  });

  scene('1. a v3 lock is granted by the NLM server and is on the file: the server sees it in /proc/locks', async () => {
    const g1 = await holder(client!, 'g1', '/mnt/nfs/data');
    const t0 = Date.now();
    assert.equal(await g1.lock(0, 100), 'ok');
    figures.firstV3LockMs = Date.now() - t0;
    if (anchor === 'lockdrop') {
      const mine = (await locks()).filter((l) => l.callerName === CLIENT_NAME);
      assert.deepEqual(mine.map((l) => [l.offset, l.length, l.exclusive, l.export, l.server]), [['0', '100', true, EXPORT, SERVER]], 'lockdropctl locks');
      assert.deepEqual(await procLocks('data'), ['OFDLCK WRITE 0 99'], "lockdrop's OFD lock in the server's /proc/locks");
    } else {
      assert.deepEqual(await procLocks('data'), ['POSIX WRITE 0 99'], "the kernel's lockd's POSIX lock in the server's /proc/locks");
    }
  });

  scene('2. v3 and v4 locks of the same file conflict both ways; a v3 F_SETLKW is granted when the v4 holder unlocks', async () => {
    const v4 = await holder(client!, 'v4', '/mnt/nfs4/data');
    assert.equal(await v4.lock(0, 100), 'err EAGAIN', "the v3 lock refuses the v4 client's");
    assert.equal(await v4.lock(200, 100), 'ok');
    const g2 = await holder(client!, 'g2', '/mnt/nfs/data');
    assert.equal(await g2.lock(200, 100), 'err EAGAIN', "the v4 lock refuses the v3 client's");
    const waiting = g2.lock(200, 100, { wait: true, timeoutMs: 60_000 });
    assert.equal(await within(waiting, 3_000), 'pending', 'F_SETLKW waits behind the v4 holder');
    const t0 = Date.now();
    assert.equal(await v4.unlock(200, 100), 'ok');
    assert.equal(await waiting, 'ok', 'granted once the v4 holder unlocked');
    figures.v4UnlockToV3GrantMs = Date.now() - t0;
    assert.equal(await v4.lock(200, 100), 'err EAGAIN', 'the granted v3 lock refuses the v4 client again');
    assert.equal(await g2.unlock(200, 100), 'ok');
    assert.equal(await v4.lock(200, 100), 'ok', "the v3 unlock reached the file: the v4 client's lock goes through");
    assert.equal(await v4.unlock(200, 100), 'ok');
  });

  scene("3. a server-local process's lock and a v3 lock conflict both ways", async () => {
    const local = await holder(server!, 'local', `${EXPORT}/data`);
    assert.equal(await local.lock(0, 100), 'err EAGAIN', "the v3 lock refuses the server's process");
    assert.equal(await local.lock(400, 100), 'ok');
    const g1 = holders.g1!;
    assert.equal(await g1.lock(400, 100), 'err EAGAIN', "the server's process refuses the v3 lock");
    const waiting = g1.lock(400, 100, { wait: true, timeoutMs: 60_000 });
    assert.equal(await within(waiting, 3_000), 'pending', 'F_SETLKW waits behind the local process');
    assert.equal(await local.unlock(400, 100), 'ok');
    assert.equal(await waiting, 'ok', 'granted once the local process unlocked');
    assert.equal(await g1.unlock(400, 100), 'ok');
    assert.equal(await local.lock(400, 100), 'ok', "the v3 unlock reached the file");
    assert.equal(await local.unlock(400, 100), 'ok');
    await local.kill(); // its descriptor would keep the export busy in scene 5
  });

  scene('4. a v4 read delegation held by a reader: a v3 exclusive lock is granted once the delegation is recalled', async () => {
    // A reader of its own holding the file open for reading: knfsd hands it a read delegation.
    reader = (await cli('(exec 3</mnt/nfs4/deleg; cat <&3 >/dev/null; exec sleep 600) >/dev/null 2>&1 & echo $!')).trim();
    const delegs = await until('the read delegation in the server\'s /proc/locks', async () => {
      const l = await procLocks('deleg');
      return l.some((x) => x.startsWith('DELEG')) ? l : undefined;
    }, 20_000, 1_000);
    figures.delegation = delegs;
    const g4 = await holder(client!, 'g4', '/mnt/nfs/deleg');
    const t0 = Date.now();
    const r = await g4.lock(0, 0, { timeoutMs: 90_000 });
    figures.v3LockOverDelegationMs = Date.now() - t0;
    assert.equal(r, 'ok', 'the v3 lock over a read delegation');
    assert.ok(!(await procLocks('deleg')).some((x) => x.startsWith('DELEG')), 'the delegation was recalled');
    assert.equal(await g4.unlock(0, 0), 'ok');
  });

  scene("6. the client's reboot releases its locks (its sm-notify at boot)", async () => {
    assert.equal(await holders.g1!.lock(600, 100), 'ok');
    // No v4 state may outlive the crash (knfsd 6.1 keeps an expired client's state, courteously).
    await holders.v4!.kill();
    await cli(`kill ${reader}; sleep 1; umount /mnt/nfs4`);
    const before = await procLocks('data');
    assert.ok(before.length >= 1, `the client's locks are on the file: ${before.join(', ')}`);
    await client!.crash();
    const t0 = Date.now();
    client = await Guest.boot(clientOpts);
    boots.push(client);
    figures.clientBootMs = Date.now() - t0;
    await until('the rebooted client\'s locks released on the server', async () => ((await procLocks('data')).length === 0 ? true : undefined), 60_000, 1_000);
    if (anchor === 'lockdrop') assert.deepEqual((await locks()).filter((l) => l.callerName === CLIENT_NAME), [], 'lockdropctl locks');
  });

  scene('5. exportfs -u drops the export\'s locks, and the filesystem unmounts at once', async () => {
    const g7 = await holder(client!, 'g7', '/mnt/nfs/gone');
    assert.equal(await g7.lock(0, 10), 'ok');
    assert.equal((await procLocks('gone')).length, 1, 'the lock is on the file');
    const t0 = Date.now();
    await srv(`exportfs -u '*:${EXPORT}'`);
    figures.unexportMs = Date.now() - t0;
    if (anchor === 'kernel') {
      // The seed thread's complaint: knfsd's lockd keeps the export's locks after exportfs -u,
      // until the operator writes the path to unlock_filesystem.
      await sleep(5_000);
      figures.kernelLocksAfterUnexport = await procLocks('gone');
      await srv(`echo ${EXPORT} > /proc/fs/nfsd/unlock_filesystem`);
    }
    const dropped = await until('the export\'s locks dropped', async () => ((await procLocks('gone')).length === 0 ? Date.now() - t0 : undefined), 20_000, 500);
    figures.unexportToDroppedMs = dropped;
    // knfsd's own file cache lets go of the files by itself within seconds: bounded retries.
    // Who keeps it busy: a process's descriptor (none: the kernel, knfsd's caches).
    const holdersNow = async (): Promise<string> => (await srv(`for p in /proc/[0-9]*; do ls -l $p/fd 2>/dev/null | grep -q ' ${EXPORT}' && echo "$(cat $p/comm) $(ls -l $p/fd | grep ' ${EXPORT}' | awk '{print $NF}' | tr '\\n' ' ')"; done`)).trim();
    let why = '';
    const busy: { ms: number; processes: string }[] = [];
    figures.busyAt = busy;
    const umounted = await until('umount of the export', async () => {
      const r = await server!.agent.sh(`umount ${EXPORT} 2>&1`);
      why = r.out;
      if (r.rc !== 0) busy.push({ ms: Date.now() - t0, processes: await holdersNow() });
      return r.rc === 0 ? Date.now() - t0 : undefined;
    }, 30_000, 1_000).catch(async (err: Error) => {
      throw new Error(`${err.message}: ${why.trim()}; holders: ${await holdersNow()}`);
    });
    figures.unexportToUnmountedMs = umounted;
    if (anchor === 'lockdrop') assert.deepEqual(await locks(), [], 'lockdropctl locks');
  });
});
