// The Linux kernel's NFS client (its lockd, the host's rpc.statd) through a lockdrop failover:
// Debian bookworm's kernel in QEMU on a bridge with two server nodes, each running NFS-Ganesha
// (NFSv3 + MOUNT, Enable_NLM = false) and lockdropd (NLM + statd) on one shared export, and a
// userspace NLM client as another host. Every scene asserts what the guest's processes see and
// what lockdropctl shows; the bridge's traffic is captured and must have no malformed frame.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, createWriteStream, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Lab, JsonLines, type LabHost } from '../../src/demo/lab';
import type { LockView, StatusReport } from '../../src/control';
import { sh } from '../support/netns';
import { startGanesha, type Ganesha } from '../support/ganesha';
import { localLock, releaseLocalLocks } from '../support/local-locker';
import { Guest, REPO, buildInitramfs, findKernel, whyNotRunnable, type GuestOptions, type Holder, type Kernel } from './vm';

const SUBNET = '10.79.0';
const VIP = `${SUBNET}.100`;
/** A's and B's addresses that never move. */
const A2 = `${SUBNET}.101`;
const B2 = `${SUBNET}.102`;
const GUEST_ADDR = `${SUBNET}.21`;
const GUEST_NAME = 'vmclient';
const OTHER_NAME = 'otherhost';
const EXPORT_ID = 77;
/** Long enough never to end by itself during a scene: scenes end it with lockdropctl. */
const GRACE_S = 120;
const IPADDR2 = '/usr/lib/ocf/resource.d/heartbeat/IPaddr2';

type Json = Record<string, any>;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Node { host: LabHost; control: string; log: JsonLines; child: ChildProcess }

/** Polls until check() returns a value (not undefined), or throws what it last saw. */
async function until<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs: number, everyMs = 200): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (${String(last)})` : ''}`);
    await sleep(everyMs);
  }
}

/** Settles with the promise's value, or 'pending' if it has not settled within ms. */
const within = <T>(p: Promise<T>, ms: number): Promise<T | 'pending'> => Promise.race([p, sleep(ms).then(() => 'pending' as const)]);

describe('the Linux kernel NFS client in a VM, through a failover (test/vm)', function () {
  this.timeout(120_000);
  let lab: Lab;
  let work: string;
  let kernel: Kernel;
  let initrd: string;
  let exportDir: string;
  let guest: Guest | undefined;
  /** Every boot's guest, for the kernel's complaints at the end. */
  const boots: Guest[] = [];
  let guestOpts: GuestOptions;
  let other: JsonLines;
  let otherSeq = 0;
  let capture: ChildProcess | undefined;
  const ganeshas: Ganesha[] = [];
  let pcap: string;
  const nodes: Record<'a' | 'b', Node> = {} as Record<'a' | 'b', Node>;
  let broken: string | undefined;
  let failed = false;
  let fh: string;
  /** h5's F_SETLKW, queued on A before the failover and granted on B after its grace. */
  let waiter: Promise<string>;
  const holders: Record<string, Holder> = {};
  /** The svid the kernel gave each holder's lock owner, as lockdropctl shows it. */
  const svids: Record<string, number> = {};
  const timings: Json = {};
  const moves: { node: string; ipaddr2Ms: number; arrivedAt: number; reclaims: number }[] = [];

  const ctl = <T = unknown>(n: 'a' | 'b', args: string[]): T => lab.ctl<T>(nodes[n].host, nodes[n].control, args);
  /** `lockdropctl locks --json` prints one object per line. */
  const locks = (n: 'a' | 'b', ip?: string): LockView[] =>
    lab.exec(nodes[n].host, process.execPath, [path.join(REPO, 'bin', 'lockdropctl'), 'locks', '--json', '--control', nodes[n].control, ...(ip ? ['--ip', ip] : [])])
      .split('\n').filter(Boolean).map((l) => JSON.parse(l) as LockView);
  const blocked = (n: 'a' | 'b', count: number) => (): true | undefined => (ctl<StatusReport>(n, ['status']).blocked === count ? true : undefined);
  const guestLocks = (n: 'a' | 'b', ip?: string): LockView[] => locks(n, ip).filter((l) => l.callerName === GUEST_NAME);
  const ranges = (ls: LockView[]): string[] => ls.map((l) => `${l.server} ${l.offset}+${l.length}${l.exclusive ? ' w' : ' r'}`).sort();
  const otherDo = async (r: Json, timeoutMs = 15_000): Promise<string> => {
    const id = ++otherSeq;
    other.send({ id, server: VIP, fh, svid: 7, ...r });
    const reply = await other.wait(`${OTHER_NAME} ${r.do}`, (j) => j.id === id, timeoutMs);
    return reply.status as string;
  };
  /**
   * Moves the VIP as a cluster does, with resource-agents' IPaddr2: its start sends gratuitous
   * ARP, without which the guest keeps sending to the old node's MAC (a bare `ip addr add` on
   * failback leaves the guest unreachable from the VIP until its neighbour entry goes stale).
   */
  const vip = (n: 'a' | 'b', op: 'start' | 'stop'): void => void lab.exec(nodes[n].host, IPADDR2, [op],
    { ...process.env, OCF_ROOT: '/usr/lib/ocf', OCF_RESKEY_ip: VIP, OCF_RESKEY_cidr_netmask: '24', OCF_RESKEY_nic: 'eth0' });

  /** Adds the VIP on a node; notes when its lockdropd saw it arrive, for the times at the end. */
  const moveIn = async (n: 'a' | 'b', mark: number, reclaims: number): Promise<void> => {
    const started = Date.now();
    vip(n, 'start');
    const ipaddr2Ms = Date.now() - started;
    const arrived = await nodes[n].log.wait(`${VIP} arriving on ${n}`, (j) => j.address === VIP && /arrived/.test(j.msg), 10_000, mark);
    moves.push({ node: n, ipaddr2Ms, arrivedAt: Date.parse(arrived.time), reclaims });
  };

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
        if (this.test?.isPending()) throw err; // a scene reported pending is no failure
        broken = title;
        failed = true;
        throw err;
      }
    });
  };

  before(async function () {
    this.timeout(240_000);
    const why = whyNotRunnable();
    if (why) {
      process.stdout.write(`    the VM test cannot run here: ${why}\n`);
      this.skip();
    }
    failed = true; // until the lab is up: a failing setup keeps its logs too
    kernel = findKernel() as Kernel;
    work = mkdtempSync(path.join(tmpdir(), 'lockdrop-vm-'));
    initrd = path.join(work, 'initrd.cpio');
    buildInitramfs(kernel, initrd);
    exportDir = path.join(work, 'export');
    mkdirSync(exportDir);
    writeFileSync(path.join(exportDir, 'data'), Buffer.alloc(4096));
    writeFileSync(path.join(exportDir, 'other'), Buffer.alloc(4096));

    lab = new Lab(`ldvm${process.pid % 1000}`, SUBNET);
    await lab.start();
    pcap = path.join(work, 'bridge.pcapng');
    // dumpcap (tshark's capture engine) itself: on SIGINT it flushes and exits. Stopping tshark
    // instead can leave its dumpcap child to the namespace's cleanup, losing the last frames.
    capture = spawn('ip', ['netns', 'exec', lab.bridgeNetns, 'dumpcap', '-q', '-i', 'br0', '-w', pcap], { stdio: ['ignore', 'ignore', 'pipe'] });
    await until('dumpcap capturing on the bridge', () => (existsSync(pcap) ? true : undefined), 20_000);
    const a = await lab.addHost('a', 1);
    const b = await lab.addHost('b', 2);
    const c = await lab.addHost('c', 11);
    lab.exec(a, 'ip', ['addr', 'add', `${A2}/24`, 'dev', 'eth0']);
    lab.exec(b, 'ip', ['addr', 'add', `${B2}/24`, 'dev', 'eth0']);

    // The moving address's NSM records are on "shared storage": one folder both nodes see.
    const shared = path.join(work, 'shared', VIP);
    mkdirSync(shared, { recursive: true });
    for (const [name, host] of [['a', a], ['b', b]] as const) {
      const dir = path.join(work, name);
      mkdirSync(dir, { mode: 0o700 });
      symlinkSync(shared, path.join(dir, VIP));
      ganeshas.push(await startGanesha({ node: host, exportPath: exportDir, exportId: EXPORT_ID, workDir: path.join(dir, 'ganesha') }));
      const log = createWriteStream(path.join(dir, 'lockdropd.log'));
      const d = lab.startDaemon(host, dir, {
        grace: GRACE_S, addresses: [`${VIP}/32`, `${A2}/32`, `${B2}/32`], pollInterval: 1, notify: { timeout: 30 },
        exports: [{ path: exportDir, ganeshaExportId: EXPORT_ID, rootSquash: false }], logLevel: (process.env.LOCKDROP_VM_LOG_LEVEL ?? 'info') as 'info',
      }, (j) => void log.write(`${JSON.stringify(j)}\n`), (line) => void log.write(`stderr: ${line}\n`));
      nodes[name] = { host, ...d };
    }
    for (const n of Object.values(nodes)) await lab.waitForControl(n.host, n.control);
    vip('a', 'start');

    const otherChild = lab.spawn(c, process.execPath, ['--require', require.resolve('tsx/cjs'), path.join(__dirname, 'other-host.ts'), OTHER_NAME, c.address]);
    let otherErr = '';
    otherChild.stderr!.setEncoding('utf8').on('data', (t: string) => (otherErr += t));
    other = new JsonLines(otherChild);
    await other.wait(`${OTHER_NAME} ready`, (j) => j.id === 0, 20_000).catch((err: Error) => {
      throw new Error(`${err.message}: ${otherErr}`);
    });

    const nfsState = path.join(work, 'guest-nfs-state');
    mkdirSync(nfsState);
    guestOpts = {
      kernel, initrd, netns: lab.bridgeNetns, bridge: 'br0', tap: 'tapvm0', mac: '52:54:00:4c:44:15', hostname: GUEST_NAME,
      address: `${GUEST_ADDR}/24`, server: VIP, exportPath: exportDir, nfsState, workDir: work,
    };
    const t0 = Date.now();
    guest = await Guest.boot(guestOpts);
    boots.push(guest);
    timings.bootMs = Date.now() - t0;
    timings.accel = guest.accel;
    failed = false;
    process.stdout.write(`    guest booted under ${guest.accel.toUpperCase()} in ${(timings.bootMs / 1000).toFixed(1)} s${guest.accel === 'tcg' ? ` (KVM: ${Guest.kvmVerdict})` : ''}\n`);
  });

  after(async function () {
    this.timeout(60_000);
    await cleanup();
    if (work && !failed && !process.env.LOCKDROP_VM_KEEP) rmSync(work, { recursive: true, force: true });
    else if (work) process.stdout.write(`    logs kept in ${work}\n`);
  });

  let cleaned = false;
  async function cleanup(): Promise<void> {
    if (cleaned) return;
    cleaned = true;
    await guest?.crash();
    await releaseLocalLocks();
    await Promise.all(ganeshas.map((g) => g.stop()));
    if (capture && capture.exitCode === null) {
      const done = new Promise((r) => capture!.once('exit', r));
      capture.kill('SIGINT');
      await within(done, 10_000);
      if (capture.exitCode === null) capture.kill('SIGKILL');
    }
    await lab?.dispose();
  }

  scene("an fcntl lock from the guest lands on node A, with the VIP as its server address", async () => {
    const g = guest!.agent;
    holders.h1 = await g.holder('h1', '/mnt/nfs/data');
    assert.equal(await holders.h1.lock(0, 100), 'ok');
    const mine = guestLocks('a');
    assert.deepEqual(ranges(mine), [`${VIP} 0+100 w`]);
    // Linux's svid is a pseudo-pid its lockd numbers per server (__nlm_alloc_pid), not the pid.
    svids.h1 = mine[0]!.svid;
    assert.equal(mine[0]!.clientAddress, GUEST_ADDR);
    assert.deepEqual(guestLocks('b'), [], 'node B holds nothing');
    fh = mine[0]!.fh;
    // Another process of the same client: a conflict between two owners of one host.
    const sibling = await g.holder('h1b', '/mnt/nfs/data');
    assert.equal(await sibling.lock(50, 10), 'err EAGAIN', "the guest's other process is refused (by the guest's kernel)");
    assert.deepEqual(ranges(guestLocks('a')), [`${VIP} 0+100 w`]);
  });

  scene('a lock another client host holds is EAGAIN in the guest', async () => {
    assert.equal(await otherDo({ do: 'lock', offset: 200, length: 100 }), 'granted');
    // Through A's other address, on another range: it must survive the VIP's move.
    assert.equal(await otherDo({ do: 'lock', server: A2, offset: 5000, length: 10, svid: 8 }), 'granted');
    assert.equal(await holders.h1!.lock(200, 100), 'err EAGAIN');
    assert.match(await holders.h1!.test(250, 10), /^ok held w 200 100 /, 'F_GETLK names the other host\'s range');
  });

  scene("the guest's F_SETLKW behind that lock is granted by lockdrop's GRANTED to the kernel", async () => {
    holders.h2 = await guest!.agent.holder('h2', '/mnt/nfs/data');
    const waiting = holders.h2.lock(200, 100, { wait: true, timeoutMs: 60_000 });
    assert.equal(await within(waiting, 1_500), 'pending', 'F_SETLKW waits');
    await until("the kernel's blocked request on node A", blocked('a', 1), 10_000);
    // A second waiter, interrupted: the kernel takes its request back with CANCEL.
    const quitter = await guest!.agent.holder('h2q', '/mnt/nfs/data');
    const quitting = quitter.lock(200, 100, { wait: true, timeoutMs: 60_000 });
    await until("the second blocked request on node A", blocked('a', 2), 10_000);
    await quitter.kill('INT');
    assert.equal(await quitting, 'err EINTR');
    await until("the interrupted request cancelled on node A", blocked('a', 1), 10_000);
    assert.equal(await otherDo({ do: 'unlock', offset: 200, length: 100 }), 'granted');
    const t = Date.now();
    assert.equal(await waiting, 'ok');
    timings.grantedMs = Date.now() - t;
    assert.deepEqual(ranges(guestLocks('a')), [`${VIP} 0+100 w`, `${VIP} 200+100 w`]);
    svids.h2 = guestLocks('a').find((l) => l.offset === '200')!.svid;
    assert.notEqual(svids.h2, svids.h1, 'two processes are two lock owners');
  });

  scene('the VIP moves from A to B: A drops exactly the VIP\'s locks, B notifies, the kernel reclaims', async () => {
    // A waiter too, behind the other host: the kernel queues it again on B after the notify.
    assert.equal(await otherDo({ do: 'lock', offset: 300, length: 100, svid: 9 }), 'granted');
    holders.h5 = await guest!.agent.holder('h5', '/mnt/nfs/data');
    waiter = holders.h5.lock(300, 100, { wait: true, timeoutMs: 90_000 });
    await until("the guest's waiter blocked on node A", blocked('a', 1), 10_000);
    const markA = nodes.a.log.count;
    vip('a', 'stop');
    const drop = await nodes.a.log.wait(`A's drop of ${VIP}`, (j) => j.address === VIP && typeof j.locks === 'number' && typeof j.ms === 'number', 15_000, markA);
    assert.deepEqual([drop.locks, drop.blocked, drop.clients], [3, 1, 2], "A dropped the guest's two locks and its waiter, and the other host's lock through the VIP");
    assert.deepEqual(guestLocks('a'), []);
    assert.equal(ctl<StatusReport>('a', ['status']).blocked, 0);
    assert.deepEqual(ranges(locks('a')), [`${A2} 5000+10 w`], "the other host's lock through A's other address stays");

    const markB = nodes.b.log.count;
    await moveIn('b', markB, 2);
    const back = await until('the guest\'s locks reclaimed on B', () => {
      const l = guestLocks('b', VIP);
      return l.length === 2 ? l : undefined;
    }, 30_000, 50);
    assert.deepEqual(ranges(back), [`${VIP} 0+100 w`, `${VIP} 200+100 w`]);
    assert.deepEqual(back.map((l) => `${l.offset}:${l.svid}`).sort(), [`0:${svids.h1}`, `200:${svids.h2}`], 'reclaimed by the same owners');
    const notifying = await nodes.b.log.wait('B notifying', (j) => j.msg === 'nsm: notifying hosts' && j.address === VIP, 5_000, markB);
    assert.equal(notifying.hosts, 2, 'B notifies both hosts the shared records name (the guest and the other host)');
    const status = ctl<StatusReport>('b', ['status']).addresses.find((x) => x.address === VIP)!;
    assert.ok(status.grace, "B's grace for the VIP is running");

    // The guest's processes still hold their locks, and the other host is refused them.
    const procLocks = (await guest!.agent.sh('cat /proc/locks')).out;
    for (const h of [holders.h1!, holders.h2!]) assert.match(procLocks, new RegExp(`POSIX +ADVISORY +WRITE +${h.pid} `), `${h.name} still holds its lock`);
    assert.equal(await otherDo({ do: 'lock', offset: 0, length: 100, reclaim: true }), 'denied', 'a conflicting reclaim is refused');
    assert.equal(await within(waiter, 0), 'pending', "the guest's waiter still waits");
  });

  scene("a new lock during B's grace waits for it while B's other address grants at once", async () => {
    const g = guest!.agent;
    holders.h3 = await g.holder('h3', '/mnt/nfs/new');
    const waiting = holders.h3.lock(0, 10, { timeoutMs: 60_000 });
    assert.equal((await g.sh(`mkdir -p /mnt/b2 && mount -t nfs -o vers=3,proto=tcp,mountproto=tcp ${B2}:${exportDir} /mnt/b2`, 60_000)).rc, 0);
    holders.h4 = await g.holder('h4', '/mnt/b2/other');
    const t = Date.now();
    assert.equal(await holders.h4.lock(0, 10), 'ok');
    timings.otherAddressMs = Date.now() - t;
    assert.ok(timings.otherAddressMs < 3_000, `a lock through ${B2} is granted at once (${timings.otherAddressMs} ms)`);
    assert.deepEqual(ranges(guestLocks('b', B2)), [`${B2} 0+10 w`]);
    assert.equal(await within(waiting, 1_000), 'pending', "the new lock through the VIP waits for B's grace");
    ctl('b', ['grace', 'end', '--ip', VIP]);
    const ended = Date.now();
    // Linux retries a lock refused for grace every 5 s (NLMCLNT_GRACE_WAIT).
    assert.equal(await waiting, 'ok');
    timings.afterGraceMs = Date.now() - ended;
    // The waiter from A: the other host's lock went with A's drop, so once grace is over it is free.
    assert.equal(await waiter, 'ok', "the guest's waiter from node A is granted on B");
    timings.waiterAfterGraceMs = Date.now() - ended;
    assert.deepEqual(ranges(guestLocks('b', VIP)), [`${VIP} 0+10 w`, `${VIP} 0+100 w`, `${VIP} 200+100 w`, `${VIP} 300+100 w`]);
    assert.equal(await otherDo({ do: 'lock', offset: 0, length: 100 }), 'denied', 'after grace the guest\'s lock still refuses the other host');
  });

  scene('failback: the VIP returns to A and the guest reclaims there', async () => {
    const markB = nodes.b.log.count;
    vip('b', 'stop');
    const drop = await nodes.b.log.wait(`B's drop of ${VIP}`, (j) => j.address === VIP && typeof j.locks === 'number' && typeof j.ms === 'number', 15_000, markB);
    assert.equal(drop.locks, 4);
    assert.deepEqual(ranges(guestLocks('b')), [`${B2} 0+10 w`], "B keeps the lock through its own address");
    await moveIn('a', nodes.a.log.count, 4);
    const back = await until('the guest\'s locks reclaimed on A', () => {
      const l = guestLocks('a', VIP);
      return l.length === 4 ? l : undefined;
    }, 30_000, 50);
    assert.deepEqual(ranges(back), [`${VIP} 0+10 w`, `${VIP} 0+100 w`, `${VIP} 200+100 w`, `${VIP} 300+100 w`]);
    ctl('a', ['grace', 'end', '--ip', VIP]);
    assert.equal(await otherDo({ do: 'lock', offset: 200, length: 100 }), 'denied');
  });

  scene('the guest reboots: its sm-notify tells both servers, and its locks are released', async function () {
    this.timeout(180_000);
    await guest!.crash();
    // Dead, not rebooted yet: the servers still hold what it had.
    assert.equal(guestLocks('a').length, 4);
    assert.equal(guestLocks('b').length, 1);
    const t = Date.now();
    guest = await Guest.boot(guestOpts);
    boots.push(guest);
    timings.rebootMs = Date.now() - t;
    await until('node A released the rebooted guest\'s locks', () => (guestLocks('a').length === 0 ? true : undefined), 30_000);
    await until('node B released the rebooted guest\'s locks', () => (guestLocks('b').length === 0 ? true : undefined), 30_000);
    assert.equal(await otherDo({ do: 'lock', offset: 0, length: 100 }), 'granted', 'the other host gets what the guest held');
    assert.equal(await otherDo({ do: 'unlock', offset: 0, length: 100 }), 'granted');
  });

  scene("a host process's fcntl lock on the export conflicts with the guest's NFS lock", async function () {
    const why = fileLocksInactive(ctl<StatusReport>('a', ['status']), exportDir);
    if (why) {
      process.stdout.write(`      pending: ${why}\n`);
      this.skip();
    }
    // A process on the server machine, on the export's own file: no NFS, no NLM.
    const local = localLock(path.join(exportDir, 'data'), { start: 1000, length: 100 });
    assert.equal(await local.outcome, 'locked');
    const g1 = await guest!.agent.holder('g1', '/mnt/nfs/data');
    assert.equal(await g1.lock(1000, 100), 'err EAGAIN', "the host process's lock refuses the guest");
    assert.equal(await g1.lock(0, 100), 'ok');
    assert.equal(await localLock(path.join(exportDir, 'data'), { start: 0, length: 100 }).outcome, 'refused', "the guest's NFS lock refuses the host process");
    await local.release();
    assert.equal(await g1.lock(1000, 100, { wait: true, timeoutMs: 30_000 }), 'ok', 'released on the host, granted to the guest');
    assert.equal(await g1.unlock(0, 100), 'ok');
    const after = localLock(path.join(exportDir, 'data'), { start: 0, length: 100 });
    assert.equal(await after.outcome, 'locked', "the guest's unlock reached the file");
    await after.release();
  });

  // Runs whatever happened before: the cleanup is checked also after a failed scene.
  it('leaves nothing behind, and the bridge traffic has no malformed frame', async function () {
    this.timeout(90_000);
    if (!lab) this.skip();
    await finalChecks().catch((err) => {
      failed = true;
      throw err;
    });
  });

  async function finalChecks(): Promise<void> {
    await cleanup();
    assert.deepEqual(lab.leftovers(), [], 'namespaces left behind');
    for (const g of boots) assert.notEqual(await within(g.exited, 1_000), 'pending', 'a guest still running');
    assert.equal(capture!.exitCode ?? capture!.signalCode, 0, 'dumpcap stopped and flushed its capture');
    // The kernel's lockd and NFS calls leave from random reserved ports: on 993 or 995 tshark
    // would take them for TLS by the port, unless RPC's heuristic gets the first look.
    const fields = (filter: string, ...f: string[]): string[][] =>
      sh('tshark', ['-o', 'tcp.try_heuristic_first:TRUE', '-r', pcap, '-Y', filter, '-T', 'fields', ...f.flatMap((x) => ['-e', x])]).split('\n').filter(Boolean).map((l) => l.split('\t'));
    assert.deepEqual(fields('_ws.malformed', 'frame.number'), [], 'malformed frames');
    // The kernel logs what it dislikes about a server ("lockd: spurious grace period reject",
    // "lockd: server … not responding", statd's "cannot monitor"): none of it may appear.
    const complaints = boots.flatMap((g) => g.console).filter((l) => /\b(lockd|statd|nfs|NFS|sunrpc|rpcbind)\b.*(spurious|not responding|cannot|fail|refused|error)/i.test(l));
    assert.deepEqual(complaints, [], "the guest kernel's complaints");
    if (broken) return; // the times below need every scene
    const granted = fields(`nlm && rpc.msgtyp == 0 && ip.dst == ${GUEST_ADDR} && (nlm.procedure_v4 == 5 || nlm.procedure_v4 == 10)`, 'frame.number');
    assert.ok(granted.length >= 1, 'lockdrop sent GRANTED to the kernel');
    const lockCalls = (offset: number): string[][] => fields(`nlm.procedure_v4 == 2 && ip.src == ${GUEST_ADDR} && nlm.lock.l_offset64 == ${offset}`, 'frame.number');
    assert.ok(lockCalls(200).length >= 1, "the guest's LOCK calls are found by their offset");
    assert.deepEqual(lockCalls(50), [], 'the kernel decided the conflict between its own processes without asking the server');
    const cancels = fields(`nlm.procedure_v4 == 3 && rpc.msgtyp == 0 && ip.src == ${GUEST_ADDR}`, 'frame.number');
    assert.ok(cancels.length >= 1, 'the kernel sent CANCEL for the interrupted F_SETLKW');
    const notifies = fields(`stat.procedure_v1 == 6 && rpc.msgtyp == 0 && ip.src == ${VIP} && ip.dst == ${GUEST_ADDR}`, 'frame.time_epoch');
    assert.ok(notifies.length >= 2, 'SM_NOTIFY from the VIP reached the guest at the failover and the failback');
    const rebootNotifies = fields(`stat.procedure_v1 == 6 && rpc.msgtyp == 0 && ip.src == ${GUEST_ADDR}`, 'ip.dst', 'stat.mon_id.name');
    assert.deepEqual([...new Set(rebootNotifies.map((r) => r.join(' ')))].sort(), [`${VIP} ${GUEST_NAME}`, `${B2} ${GUEST_NAME}`], "the rebooted guest's sm-notify told both servers");
    // Per move: address seen by lockdropd → first SM_NOTIFY to the guest → the last reclaim granted.
    // One row per RPC record: a TCP segment may carry several, and tshark joins their values with commas.
    const records = (filter: string, ...f: string[]): string[][] => fields(filter, ...f).flatMap((row) => {
      const cols = row.map((v) => v.split(','));
      return Array.from({ length: Math.max(...cols.map((c) => c.length)) }, (_, i) => cols.map((c) => (c.length === 1 ? c[0]! : c[i] ?? '')));
    });
    const reclaims = records(`nlm.reclaim == 1 && rpc.msgtyp == 0 && ip.src == ${GUEST_ADDR} && ip.dst == ${VIP}`, 'frame.time_epoch', 'rpc.xid');
    const replies = records(`nlm && rpc.msgtyp == 1 && ip.src == ${VIP} && ip.dst == ${GUEST_ADDR}`, 'frame.time_epoch', 'rpc.xid', 'nlm.stat').filter((r) => r[2] === '0');
    const ms = (r: string[]): number => Number(r[0]) * 1000;
    timings.moves = moves.map((m) => {
      const notify = notifies.map(ms).find((t) => t >= m.arrivedAt);
      // A call the old node's port reset is sent again with its xid: count each xid once.
      const xids = [...new Set(reclaims.filter((r) => ms(r) >= m.arrivedAt).map((r) => r[1]))].slice(0, m.reclaims);
      const answers = xids.map((xid) => replies.find((r) => r[1] === xid && ms(r) >= m.arrivedAt));
      assert.ok(notify !== undefined && xids.length === m.reclaims && answers.every(Boolean), `the capture shows ${m.node}'s notify and ${m.reclaims} granted reclaims`);
      const back = Math.max(...answers.map((r) => ms(r!)));
      return { to: m.node, ipaddr2Ms: m.ipaddr2Ms, notifyMs: +(notify - m.arrivedAt).toFixed(1), locksBackMs: +(back - m.arrivedAt).toFixed(1) };
    });
    process.stdout.write(`      times: ${JSON.stringify(timings)}\n`);
  }
});

/** Why lockdropd does not lock this export's real files (undefined: it does). */
function fileLocksInactive(status: StatusReport, exportPath: string): string | undefined {
  if (!status.files) return 'lockdropd reports no file locking (its status has no files)';
  if (status.files.unavailable) return `lockdropd cannot lock files here: ${status.files.unavailable}`;
  return status.files.exports.includes(exportPath) ? undefined : `lockdropd does not lock ${exportPath}'s files (it locks: ${status.files.exports.join(', ') || 'none'})`;
}
