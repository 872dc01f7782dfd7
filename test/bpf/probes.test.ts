import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { filter, firstValueFrom, map, timeout, toArray, take, takeUntil, timer, type Observable } from 'rxjs';
import { currentNetns, mountTracefs, openLockdropProbes, openRtnetlink, probeFeatures, type LockdropProbes } from '../../src/addon';
import { hasCommand, requireNamespaceRoot, ip, sh, uniqueName } from '../support/netns';
import { decodeEvent, netlink, type ProbeEvent } from '../../src/watch';
import { testInterface } from '../support/netns';

const EADDRNOTAVAIL = 99;
const { RTM_DELADDR } = netlink;

/** The probes' records, decoded. */
const eventsOf = (p: LockdropProbes): Observable<ProbeEvent> => p.records$.pipe(map(decodeEvent));

/** Runs ip with args; resolves with its pid once it exited. */
function runIp(args: string[]): Promise<{ pid: number; code: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', args, { stdio: 'ignore' });
    child.on('error', reject);
    child.on('exit', (code) => resolve({ pid: child.pid!, code }));
  });
}

describe('bpf: lockdrop probes on this kernel', function () {
  let probes: LockdropProbes | undefined;
  let iface: ReturnType<typeof testInterface> | undefined;
  beforeEach(function () {
    requireNamespaceRoot(this);
  });
  afterEach(() => {
    probes?.close();
    iface?.dispose();
    probes = iface = undefined;
  });

  it('probes features: tracepoints (once tracefs is mounted), BTF and ring buffers here; fentry and kprobe each supported or with a reason', () => {
    assert.equal(mountTracefs(), undefined, 'tracefs mounted or already there');
    const f = probeFeatures();
    assert.equal(f.tracepoint.supported, true);
    assert.equal(f.btf.supported, true);
    assert.equal(f.ringbuf.supported, true);
    for (const name of ['fentry', 'kprobe'] as const) {
      const a = f[name];
      if (!a.supported) assert.match(a.reason, /\S/);
    }
    assert.equal(probeFeatures(), f, 'cached');
  });

  it('reports the kernel removal probes as unsupported with the reason, or attached where the kernel allows', () => {
    probes = openLockdropProbes();
    const f = probeFeatures();
    const removal = probes.programs.filter((p) => p.type === 'tracing' || p.type === 'kprobe');
    assert.equal(removal.length, 6);
    for (const p of removal) {
      const family = p.type === 'tracing' ? 'fentry' : 'kprobe';
      if (p.status === 'attached') continue;
      assert.notEqual(p.status, 'failed', `${p.name}: ${'reason' in p ? p.reason : ''}`);
      if (!f[family].supported) {
        assert.equal(p.status, 'unsupported');
        assert.match(p.reason, new RegExp(`^${family}: `));
      }
    }
    // This kernel: fentry is refused (EPERM), no kprobes; everything else still attaches.
    if (!f.fentry.supported) assert.match(f.fentry.reason, /EPERM/);
    assert.ok(probes.programs.filter((p) => p.type === 'tracepoint').every((p) => p.status === 'attached'));
  });

  it('where the kernel removal probes attach, they report a removal with the same fields', async function () {
    probes = openLockdropProbes();
    if (!probes.programs.some((p) => p.name.startsWith('removed_inet') && p.status === 'attached')) this.skip(); // not on this kernel
    iface = testInterface(['10.80.9.1/24']);
    const events: ProbeEvent[] = [];
    eventsOf(probes).subscribe((e) => events.push(e));
    const { pid } = await runIp(['addr', 'del', '10.80.9.1/24', 'dev', iface.name]);
    await waitFor(() => events.some((e) => e.kind === 'kernel' && e.address === '10.80.9.1'));
    const k = events.find((e) => e.kind === 'kernel' && e.address === '10.80.9.1')!;
    assert.deepEqual([k.pid, k.comm, k.prefixLen, k.ifindex, k.netns], [pid, 'ip', 24, iface.ifindex, currentNetns()]);
  });

  it('ip addr del: an intent with address, prefix, pid, comm and netns, before the netlink event, then a successful outcome', async () => {
    iface = testInterface(['10.80.0.1/24']);
    probes = openLockdropProbes();
    const events: ProbeEvent[] = [];
    eventsOf(probes).subscribe((e) => events.push(e));
    const rtnl = openRtnetlink();
    let netlinkNs: bigint | undefined;
    rtnl.messages$.subscribe((d) => {
      if (Buffer.isBuffer(d) && netlink.splitMessages(d).some((m) => m.type === RTM_DELADDR)) netlinkNs ??= process.hrtime.bigint();
    });
    try {
      const { pid, code } = await runIp(['addr', 'del', '10.80.0.1/24', 'dev', iface.name]);
      assert.equal(code, 0);
      await waitFor(() => netlinkNs !== undefined && events.some((e) => e.kind === 'outcome' && e.pid === pid));
      const intent = events.find((e) => e.kind === 'intent' && e.pid === pid && e.msgType === RTM_DELADDR);
      assert.ok(intent, 'intent seen');
      assert.equal(intent.address, '10.80.0.1');
      assert.equal(intent.prefixLen, 24);
      assert.equal(intent.family, 4);
      assert.equal(intent.ifindex, iface.ifindex);
      assert.equal(intent.comm, 'ip');
      assert.equal(intent.netns, currentNetns());
      assert.ok(intent.tsNs < netlinkNs!, 'the intent happened before the netlink event reached us');
      const outcome = events.find((e) => e.kind === 'outcome' && e.pid === pid)!;
      assert.equal(outcome.seq, intent.seq);
      assert.equal(outcome.msgType, RTM_DELADDR);
      assert.equal(outcome.error, 0);
    } finally {
      rtnl.close();
    }
  });

  it('a failing ip addr del (no such address): an intent whose outcome is the failure', async () => {
    iface = testInterface(['10.80.1.1/24']);
    probes = openLockdropProbes();
    const events: ProbeEvent[] = [];
    eventsOf(probes).subscribe((e) => events.push(e));
    const { pid, code } = await runIp(['addr', 'del', '10.80.1.99/24', 'dev', iface.name]);
    assert.notEqual(code, 0);
    await waitFor(() => events.some((e) => e.kind === 'outcome' && e.pid === pid));
    const intent = events.find((e) => e.kind === 'intent' && e.pid === pid)!;
    assert.equal(intent.address, '10.80.1.99');
    const outcome = events.find((e) => e.kind === 'outcome' && e.pid === pid)!;
    assert.equal(outcome.seq, intent.seq);
    assert.equal(outcome.error, -EADDRNOTAVAIL);
  });

  it('reports each request of a batched send (ip addr flush packs several into one sendmsg)', async () => {
    iface = testInterface(['10.80.2.1/24', '10.80.3.1/24', '10.80.4.1/24']);
    probes = openLockdropProbes();
    const events: ProbeEvent[] = [];
    eventsOf(probes).subscribe((e) => events.push(e));
    const { pid } = await runIp(['addr', 'flush', 'dev', iface.name]);
    await waitFor(() => events.filter((e) => e.kind === 'intent' && e.pid === pid && e.family === 4).length >= 3);
    const intents = events.filter((e) => e.kind === 'intent' && e.pid === pid && e.family === 4); // not the veth's link-local IPv6
    assert.deepEqual(intents.map((e) => e.address).sort(), ['10.80.2.1', '10.80.3.1', '10.80.4.1']);
    assert.equal(new Set(intents.map((e) => e.seq)).size, 3);
  });

  it('sees IPv6 requests and link requests', async () => {
    iface = testInterface(['fd00:80::1/64']);
    probes = openLockdropProbes();
    const events: ProbeEvent[] = [];
    eventsOf(probes).subscribe((e) => events.push(e));
    const del6 = await runIp(['addr', 'del', 'fd00:80::1/64', 'dev', iface.name]);
    const down = await runIp(['link', 'set', iface.name, 'down']);
    await waitFor(() => events.filter((e) => e.kind === 'outcome').length >= 2);
    const v6 = events.find((e) => e.kind === 'intent' && e.pid === del6.pid)!;
    assert.deepEqual([v6.family, v6.address, v6.prefixLen], [6, 'fd00:80::1', 64]);
    const link = events.find((e) => e.kind === 'intent' && e.pid === down.pid && (e.linkChange & 1) === 1)!;
    assert.ok(link, JSON.stringify(events.filter((e) => e.pid === down.pid), (_k, v) => (typeof v === 'bigint' ? String(v) : v)));
    assert.ok(link.ifindex === iface.ifindex || link.ifname === iface.name, `names the interface: ${JSON.stringify(link, (_k, v) => (typeof v === "bigint" ? String(v) : v))}`);
    assert.equal(link.linkChange & 1, 1, 'IFF_UP changes');
    assert.equal(link.linkFlags & 1, 0, 'to down');
  });

  it('without privileges: each probe answers why not, and opening the probes is a BpfUnsupported, not a crash', function () {
    if (!hasCommand('setpriv')) this.skip();
    const out = execFileSync('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', process.execPath, '-r', 'tsx/cjs', '-e', `
      const a = require('./src/addon');
      const features = a.probeFeatures();
      let error = '';
      try { a.openLockdropProbes(); } catch (e) { error = e.name; }
      console.log(JSON.stringify({ features, error }));`], { encoding: 'utf8', cwd: resolve(__dirname, '../..') });
    const { features, error } = JSON.parse(out.trim().split('\n').at(-1)!);
    for (const name of ['ringbuf', 'tracepoint', 'fentry', 'kprobe']) {
      assert.equal(features[name].supported, false);
      assert.match(features[name].reason, /EPERM/);
    }
    assert.equal(error, 'BpfUnsupported');
  });

  it('filters by network namespace: requests in another namespace are not reported', async () => {
    const ns = uniqueName('ldbpf');
    ip('netns', 'add', ns);
    try {
      probes = openLockdropProbes();
      const seen = firstValueFrom(eventsOf(probes).pipe(filter((e) => e.kind === 'intent'), takeUntil(timer(500)), toArray()));
      sh('ip', ['-n', ns, 'addr', 'add', '10.81.0.1/32', 'dev', 'lo']);
      assert.deepEqual(await seen, []);
      probes.close();
      probes = openLockdropProbes({ netns: 0 });
      const all = firstValueFrom(eventsOf(probes).pipe(filter((e) => e.kind === 'intent' && e.address === '10.81.0.1'), take(1), timeout(5000)));
      sh('ip', ['-n', ns, 'addr', 'del', '10.81.0.1/32', 'dev', 'lo']);
      assert.notEqual((await all).netns, currentNetns());
    } finally {
      sh('ip', ['netns', 'del', ns], { allowFail: true });
    }
  });
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}
