import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { Subject, firstValueFrom } from 'rxjs';
import { openLockdropProbes, type ProgramStatus } from '../../src/addon';
import { EVENT_LAYOUT, EVENT_SIZE, EVENT_VERSION, bpfSource, IntentTracker, netlink, type AddressChange, type KernelProbes, type ProbeEvent, type SourceItem } from '../../src/watch';
import { requireNamespaceRoot } from '../support/netns';
import { testInterface } from '../support/netns';

const { RTM_DELADDR, RTM_NEWADDR, RTM_NEWLINK } = netlink;

const base: ProbeEvent = {
  kind: 'intent', tid: 7, pid: 7, comm: 'ip', netns: 4026531840, tsNs: process.hrtime.bigint(), msgType: RTM_DELADDR,
  family: 4, prefixLen: 24, ifindex: 3, ifname: 'eth1', address: '10.0.0.5', error: 0, seq: 100, nlFlags: 5, linkFlags: 0, linkChange: 0,
};
const ev = (over: Partial<ProbeEvent>): ProbeEvent => ({ ...base, ...over });

describe('bpf source: intents and outcomes', () => {
  it('an address removal: remove-intent, then removed on a successful ack, with pid, comm, netns', () => {
    const t = new IntentTracker();
    const [intent] = t.handle(ev({}));
    assert.deepEqual({ ...intent, at: 0 }, {
      address: '10.0.0.5', family: 4, prefixLen: 24, ifindex: 3, label: 'eth1', kind: 'remove-intent', source: 'bpf', at: 0, pid: 7, comm: 'ip', netns: 4026531840,
    });
    const [done] = t.handle(ev({ kind: 'outcome', address: undefined, family: 0, error: 0, tsNs: base.tsNs + 1000000n }));
    assert.equal(done.kind, 'removed');
    assert.equal(done.address, '10.0.0.5');
    assert.ok(Math.abs(done.at - intent.at - 1) < 0.01, 'outcome time');
  });

  it('a failed removal: intent-failed; an outcome of another request or process is ignored', () => {
    const t = new IntentTracker();
    t.handle(ev({}));
    assert.deepEqual(t.handle(ev({ kind: 'outcome', seq: 101, error: -99 })), []);
    assert.deepEqual(t.handle(ev({ kind: 'outcome', pid: 8, error: -99 })), []);
    assert.deepEqual(t.handle(ev({ kind: 'outcome', error: -99 })).map((c) => c.kind), ['intent-failed']);
    assert.deepEqual(t.handle(ev({ kind: 'outcome', error: -99 })), [], 'each outcome once');
  });

  it('additions: IPv4 on a successful ack; IPv6 is left to netlink (DAD); links and kernel events', () => {
    const t = new IntentTracker();
    assert.deepEqual(t.handle(ev({ msgType: RTM_NEWADDR })), []);
    assert.deepEqual(t.handle(ev({ kind: 'outcome', msgType: RTM_NEWADDR })).map((c) => c.kind), ['added']);
    t.handle(ev({ msgType: RTM_NEWADDR, family: 6, address: 'fd00::5', seq: 5 }));
    assert.deepEqual(t.handle(ev({ kind: 'outcome', msgType: RTM_NEWADDR, seq: 5 })), []);
    assert.deepEqual(t.handle(ev({ msgType: RTM_NEWLINK, family: 0, address: undefined })), []);
    const [k] = t.handle(ev({ kind: 'kernel', comm: 'kworker/0:1', family: 6, address: 'FD00:0:0::5' }));
    assert.deepEqual([k.kind, k.address, k.comm], ['removed', 'fd00::5', 'kworker/0:1']);
  });

  it('forgets the oldest requests beyond its bound', () => {
    const t = new IntentTracker();
    for (let seq = 0; seq < 5000; seq++) t.handle(ev({ seq }));
    assert.deepEqual(t.handle(ev({ kind: 'outcome', seq: 0, error: -1 })), []);
    assert.equal(t.handle(ev({ kind: 'outcome', seq: 4999, error: -1 })).length, 1);
  });
});

/** One struct lockdrop_event: an IPv4 RTM_DELADDR intent (kind 1) or its outcome (kind 2). */
function record(kind: 1 | 2, seq: number, error = 0): Buffer {
  const L = EVENT_LAYOUT;
  const r = Buffer.alloc(EVENT_SIZE);
  r.writeUInt16LE(EVENT_VERSION, L.version.offset);
  r.writeUInt16LE(kind, L.kind.offset);
  r.writeUInt32LE(9, L.pid.offset);
  r.writeUInt32LE(9, L.tgid.offset);
  r.writeBigUInt64LE(process.hrtime.bigint(), L.ts_ns.offset);
  r.write('ip', L.comm.offset);
  r[L.family.offset] = netlink.AF_INET;
  r[L.prefix.offset] = 24;
  r.writeUInt16LE(RTM_DELADDR, L.msg_type.offset);
  r.writeUInt32LE(3, L.ifindex.offset);
  r.writeInt32LE(error, L.error.offset);
  r.writeUInt32LE(seq, L.seq.offset);
  Buffer.from([10, 0, 0, 5]).copy(r, L.address.offset);
  return r;
}

describe('bpf source over given probes', () => {
  function fakeProbes() {
    const records = new Subject<Buffer>();
    const probes = { records$: records, lost: 0, closed: 0, lostEvents: () => probes.lost, close: () => void probes.closed++ };
    return probes satisfies KernelProbes;
  }

  it('opens the probes on subscribe, decodes their records, marks lost events, closes on unsubscribe', () => {
    const probes = fakeProbes();
    let opened = 0;
    const source = bpfSource(() => (opened++, probes));
    assert.equal(opened, 0, 'cold');
    const items: SourceItem[] = [];
    const sub = source.subscribe((i) => items.push(i));
    assert.equal(opened, 1);
    probes.records$.next(record(1, 40));
    probes.lost = 3;
    probes.records$.next(record(2, 40));
    assert.deepEqual(items.map((i) => (i.kind === 'overflow' ? `overflow ${i.reason}` : `${i.kind} ${i.address} ${i.comm}[${i.pid}]`)),
      ['remove-intent 10.0.0.5 ip[9]', 'overflow 3 probe events lost (ring buffer full)', 'removed 10.0.0.5 ip[9]']);
    sub.unsubscribe();
    assert.equal(probes.closed, 1);
  });

  it('errors on a record of another layout, and when the probes cannot be opened', async () => {
    const probes = fakeProbes();
    const failed = firstValueFrom(bpfSource(() => probes));
    const bad = record(1, 1);
    bad.writeUInt16LE(EVENT_VERSION + 1, EVENT_LAYOUT.version.offset);
    probes.records$.next(bad);
    await assert.rejects(failed, { name: 'ProbeEventError' });
    assert.equal(probes.closed, 1);
    await assert.rejects(firstValueFrom(bpfSource(() => { throw new Error('no BTF'); })), /no BTF/);
  });
});

describe('bpf source: live in the test namespace', function () {
  beforeEach(function () {
    requireNamespaceRoot(this);
  });

  it('ip addr del of a present and of an absent address: remove-intent + removed, remove-intent + intent-failed', async () => {
    const iface = testInterface(['10.82.0.1/24']);
    let programs: ProgramStatus[] = [];
    const changes: AddressChange[] = [];
    const sub = bpfSource(() => {
      const probes = openLockdropProbes();
      programs = probes.programs;
      return probes;
    }).subscribe((c: SourceItem) => {
      if (c.kind !== 'overflow') changes.push(c);
    });
    try {
      assert.ok(programs.some((p) => p.status === 'attached'));
      const ok = await run(['addr', 'del', '10.82.0.1/24', 'dev', iface.name]);
      const bad = await run(['addr', 'del', '10.82.0.7/24', 'dev', iface.name]);
      const deadline = Date.now() + 5000;
      while (changes.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      const of = (pid: number) => changes.filter((c) => c.pid === pid).map((c) => `${c.kind} ${c.address}/${c.prefixLen} ${c.comm}`);
      assert.deepEqual(of(ok), ['remove-intent 10.82.0.1/24 ip', 'removed 10.82.0.1/24 ip']);
      assert.deepEqual(of(bad), ['remove-intent 10.82.0.7/24 ip', 'intent-failed 10.82.0.7/24 ip']);
    } finally {
      sub.unsubscribe();
      iface.dispose();
    }
  });

  it('a full ring buffer: an overflow marker saying how many events were lost, and the source goes on', async () => {
    const iface = testInterface([]);
    const items: SourceItem[] = [];
    const sub = bpfSource(() => openLockdropProbes({ ringBufferBytes: 4096 })).subscribe((i) => items.push(i));
    try {
      // The loop is blocked in execFileSync while ip sends: ~36 events fit in 4 KiB, 600 come.
      const batch = Array.from({ length: 300 }, (_, i) => `addr add 10.83.${i >> 7}.${(i & 127) + 1}/32 dev ${iface.name}`).join('\n');
      execFileSync('ip', ['-batch', '-'], { input: batch });
      const deadline = Date.now() + 5000;
      while (!items.some((i) => i.kind === 'overflow') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      const overflow = items.find((i) => i.kind === 'overflow');
      assert.ok(overflow && overflow.kind === 'overflow');
      assert.equal(overflow.source, 'bpf');
      assert.match(overflow.reason!, /^\d+ probe events lost/);
      const pid = await run(['addr', 'del', '10.83.0.1/32', 'dev', iface.name]);
      while (!items.some((i) => i.kind === 'removed' && i.pid === pid) && Date.now() < deadline + 5000) await new Promise((r) => setTimeout(r, 10));
      assert.ok(items.some((i) => i.kind === 'removed' && i.pid === pid), `still working: ${JSON.stringify(items.slice(-4))} ${items.length}`);
    } finally {
      sub.unsubscribe();
      iface.dispose();
    }
  });

  it('errors with the typed reason where the probes cannot run', async () => {
    await assert.rejects(firstValueFrom(bpfSource(() => openLockdropProbes({ objectPath: '/nonexistent/lockdrop.bpf.o' }))), { name: 'BpfUnsupported', message: /missing/ });
  });
});

function run(args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', args, { stdio: 'ignore' });
    child.on('error', reject);
    child.on('exit', () => resolve(child.pid!));
  });
}
