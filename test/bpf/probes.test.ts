import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { filter, firstValueFrom, map, timeout, toArray, take, takeUntil, timer, type Observable } from 'rxjs';
import { currentNetns, mountTracefs, openLockdropProbes, openRtnetlink, probeFeatures, type LockdropProbes } from '../../src/addon';
import { hasCommand, requireNamespaceRoot, ip, sh, uniqueName } from '../support/netns';
import { decodeEvent, netlink, type ProbeEvent } from '../../src/watch';
import { testInterface } from '../support/netns';
import { waitFor } from '../support/wait';

const EADDRNOTAVAIL = 99;
const ECONNREFUSED = 111;
const NETLINK_REQUEST = resolve(__dirname, '../fixtures/bpf/netlink-request.py');

const { RTM_DELADDR, RTM_NEWLINK } = netlink;

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

  it('every program: attached and its events arrive, or refused with the feature probe\'s reason and its fallback reported', async () => {
    iface = testInterface(['10.80.9.1/24', 'fd00:80::1/64']);
    probes = openLockdropProbes();
    const f = probeFeatures();
    const events: ProbeEvent[] = [];
    eventsOf(probes).subscribe((e) => events.push(e));
    const programs = probes.programs;
    const ofPid = (pid: number): ProbeEvent[] => events.filter((e) => e.pid === pid);
    /** Events of a request are in the ring buffer in order: once its outcome is read, nothing of it is still to come. */
    const settled = (pid: number): Promise<unknown> => waitFor(`the outcome of pid ${pid}`, () => ofPid(pid).some((e) => e.kind === 'outcome'));

    // Each scenario once; each program is then judged by the events of the scenario that makes it run.
    const seen = new Map<string, ProbeEvent[]>();
    let seq = 0x1d0000;
    for (const [send, recv] of [['sendmsg', 'recvmsg'], ['sendto', 'recvfrom']] as const) {
      for (const outcome of ['ack', 'refused'] as const) {
        const r = await netlinkRequest(send, recv, outcome, iface.ifindex, ++seq, '10.80.7.99');
        assert.equal(r.result, outcome === 'ack' ? -EADDRNOTAVAIL : -ECONNREFUSED, `${send}: ${r.line}`);
        await settled(r.pid);
        seen.set(`${send} ${outcome}`, ofPid(r.pid).filter((e) => e.seq === seq));
      }
    }
    for (const [scenario, args] of [['inet', ['addr', 'del', '10.80.9.1/24', 'dev', iface.name]], ['inet6', ['addr', 'del', 'fd00:80::1/64', 'dev', iface.name]], ['link', ['link', 'set', iface.name, 'down']]] as const) {
      const { pid, code } = await runIp([...args]);
      assert.equal(code, 0, `ip ${args.join(' ')}`);
      await settled(pid);
      seen.set(scenario, ofPid(pid));
    }

    const intent = (ev: ProbeEvent[]): boolean => ev.some((e) => e.kind === 'intent' && e.address === '10.80.7.99' && e.ifindex === iface!.ifindex && e.msgType === RTM_DELADDR);
    const outcome = (error: number) => (ev: ProbeEvent[]): boolean => ev.some((e) => e.kind === 'outcome' && e.error === error && e.msgType === RTM_DELADDR);
    const kernel = (scenario: 'inet' | 'inet6' | 'link') => (ev: ProbeEvent[]): boolean => ev.some((e) => e.kind === 'kernel' && e.ifindex === iface!.ifindex && e.comm === 'ip' && e.netns === currentNetns() && (
      scenario === 'inet' ? e.address === '10.80.9.1' && e.prefixLen === 24 : scenario === 'inet6' ? e.address === 'fd00:80::1' && e.prefixLen === 64 : e.msgType === RTM_NEWLINK));
    /** Per section: the scenario that makes the program run and the event only it gives there. */
    const checks: Record<string, { scenario: string; gives: (ev: ProbeEvent[]) => boolean; what: string }> = {
      'tracepoint/syscalls/sys_enter_sendmsg': { scenario: 'sendmsg ack', gives: intent, what: 'the intent of a sendmsg' },
      'tracepoint/syscalls/sys_enter_sendto': { scenario: 'sendto ack', gives: intent, what: 'the intent of a sendto' },
      'tracepoint/syscalls/sys_exit_sendmsg': { scenario: 'sendmsg refused', gives: outcome(-ECONNREFUSED), what: 'a failed sendmsg as the outcome' },
      'tracepoint/syscalls/sys_exit_sendto': { scenario: 'sendto refused', gives: outcome(-ECONNREFUSED), what: 'a failed sendto as the outcome' },
      'tracepoint/syscalls/sys_enter_recvmsg': { scenario: 'sendmsg ack', gives: outcome(-EADDRNOTAVAIL), what: 'the ack read by recvmsg as the outcome' },
      'tracepoint/syscalls/sys_exit_recvmsg': { scenario: 'sendmsg ack', gives: outcome(-EADDRNOTAVAIL), what: 'the ack read by recvmsg as the outcome' },
      'tracepoint/syscalls/sys_enter_recvfrom': { scenario: 'sendto ack', gives: outcome(-EADDRNOTAVAIL), what: 'the ack read by recvfrom as the outcome' },
      'tracepoint/syscalls/sys_exit_recvfrom': { scenario: 'sendto ack', gives: outcome(-EADDRNOTAVAIL), what: 'the ack read by recvfrom as the outcome' },
    };
    for (const family of ['fentry', 'kprobe']) {
      checks[`${family}/__inet_del_ifa`] = { scenario: 'inet', gives: kernel('inet'), what: 'the kernel\'s removal of an IPv4 address' };
      checks[`${family}/ipv6_del_addr`] = { scenario: 'inet6', gives: kernel('inet6'), what: 'the kernel\'s removal of an IPv6 address' };
      checks[`${family}/__dev_close_many`] = { scenario: 'link', gives: kernel('link'), what: 'the kernel closing a link' };
    }
    const feature = { tracepoint: 'tracepoint', tracing: 'fentry', kprobe: 'kprobe' } as const;
    const fn = (section: string): string => section.slice(section.indexOf('/') + 1);

    for (const p of programs) {
      const check = checks[p.section];
      assert.ok(check, `${p.name} (${p.section}): the test knows no event of it`);
      const ev = seen.get(check.scenario)!;
      if (p.status === 'attached') {
        assert.ok(check.gives(ev), `${p.name} attached, so ${check.what} arrives: ${show(ev)}`);
        continue;
      }
      assert.notEqual(p.status, 'failed', `${p.name}: ${p.reason}`);
      const needs = feature[p.type as keyof typeof feature];
      assert.ok(needs, `${p.name}: a program of type ${p.type} is never left out`);
      // The same kernel function through the other family of removal probes.
      const other = programs.find((q) => q !== p && q.type !== 'tracepoint' && fn(q.section) === fn(p.section));
      if (p.status === 'unsupported') {
        assert.equal(f[needs].supported, false, `${p.name} refused although ${needs} is supported`);
        assert.equal(p.reason, `${needs}: ${(f[needs] as { reason: string }).reason}`, 'the reason is the feature probe\'s');
      } else {
        assert.ok(other?.status === 'attached', `${p.name} is ${p.status} (${p.reason}) but ${other?.name ?? 'no alternative'} is not attached`);
        assert.equal(p.reason, `${other.type === 'tracing' ? 'fentry' : 'kprobe'} used instead`);
      }
      // What is reported instead: the alternative's events, or with none attached only the
      // netlink intent and outcome of the request (the kernel's own removal is not seen).
      if (other?.status === 'attached') assert.ok(checks[other.section]!.gives(ev), `${other.name} reports ${check.what} instead: ${show(ev)}`);
      else {
        assert.ok(!ev.some((e) => e.kind === 'kernel'), `no program attached for ${fn(p.section)}, yet kernel events came: ${show(ev)}`);
        assert.ok(ev.some((e) => e.kind === 'intent') && ev.some((e) => e.kind === 'outcome' && e.error === 0), `the request's intent and outcome report it: ${show(ev)}`);
      }
    }
    // The request programs are what the probes stand on: each attached, or the probes would not have opened.
    assert.ok(programs.filter((p) => p.type === 'tracepoint').every((p) => p.status === 'attached'));
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
      await waitFor('the probe events', () => netlinkNs !== undefined && events.some((e) => e.kind === 'outcome' && e.pid === pid));
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
    await waitFor('the probe events', () => events.some((e) => e.kind === 'outcome' && e.pid === pid));
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
    await waitFor('the probe events', () => events.filter((e) => e.kind === 'intent' && e.pid === pid && e.family === 4).length >= 3);
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
    await waitFor('the probe events', () => events.filter((e) => e.kind === 'outcome').length >= 2);
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

/** Events as text for a failure message. */
const show = (ev: ProbeEvent[]): string => JSON.stringify(ev, (_k, v) => (typeof v === 'bigint' ? String(v) : v));

/** test/fixtures/bpf/netlink-request.py: one RTM_DELADDR through the named system calls; its pid and result. */
function netlinkRequest(send: 'sendmsg' | 'sendto', recv: 'recvmsg' | 'recvfrom', outcome: 'ack' | 'refused', ifindex: number, seq: number, address: string): Promise<{ pid: number; result: number; line: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('python3', [NETLINK_REQUEST, send, recv, outcome, String(ifindex), String(seq), address], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('exit', (code) => {
      const [pid, line] = out.trim().split('\n');
      if (code !== 0 || !line) return reject(new Error(`netlink-request.py exited ${code}: ${out}`));
      resolve({ pid: Number(pid), result: Number(line.split(' ')[1]), line });
    });
  });
}
