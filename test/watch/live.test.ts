// The sources against the real kernel, in the test namespace: netlink through the native addon
// (including an overflow provoked on purpose), the poll source alone, and a live recording
// replayed.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { filter, firstValueFrom, lastValueFrom, share, take, timeout, toArray } from 'rxjs';
import { addonStatus, openRtnetlink, type RtnetlinkSocket } from '../../src/addon';
import {
  addressEvents, netlinkSource, pollSource, recordTrace, replaySource, watchAddresses,
  type AddressChange, type AddressEvent, type SourceItem,
} from '../../src/watch';
import { ip, requireNamespaceRoot } from '../support/netns';
import { testInterface } from '../support/netns';

/** The kernel's IPv4 addresses on an interface, from `ip -j`. */
function kernelAddresses(dev: string): string[] {
  const [link] = JSON.parse(ip('-j', '-4', 'addr', 'show', 'dev', dev)) as Array<{ addr_info: Array<{ local: string }> }>;
  return link.addr_info.map((a) => a.local).sort();
}

describe('watch live: netlink source through the addon', function () {
  let sock: RtnetlinkSocket | undefined;
  let iface: ReturnType<typeof testInterface> | undefined;
  beforeEach(function () {
    requireNamespaceRoot(this);
    if (!addonStatus().available) this.skip();
  });
  afterEach(() => {
    sock?.close();
    iface?.dispose();
    sock = iface = undefined;
  });

  it('ip addr add / del (IPv4 and IPv6) and ip link set down become up / down events', async () => {
    iface = testInterface([]);
    sock = openRtnetlink();
    const events: AddressEvent[] = [];
    const sub = watchAddresses([netlinkSource(sock)], { floating: ['10.66.0.0/16', 'fd66::/64'] }).subscribe((e) => events.push(e));
    const wait = async (n: number): Promise<void> => {
      for (let i = 0; i < 250 && events.length < n; i++) await new Promise((r) => setTimeout(r, 20));
    };
    await new Promise((r) => setTimeout(r, 100)); // the initial dump
    ip('addr', 'add', '10.66.0.5/24', 'dev', iface.name);
    ip('addr', 'add', 'fd66::5/64', 'dev', iface.name, 'nodad');
    await wait(2);
    ip('addr', 'del', '10.66.0.5/24', 'dev', iface.name);
    await wait(3);
    ip('addr', 'add', '10.66.0.6/24', 'dev', iface.name);
    await wait(4);
    ip('link', 'set', iface.name, 'down');
    await wait(6);
    sub.unsubscribe();
    const seen = events.map((e) => `${e.type} ${e.address}`);
    // The link going down: the kernel's IPv6 flush and the link message come in either order.
    assert.deepEqual([...seen.slice(0, 4), ...seen.slice(4).sort()], ['up 10.66.0.5', 'up fd66::5', 'down 10.66.0.5', 'up 10.66.0.6', 'down 10.66.0.6', 'down fd66::5']);
    for (const e of events) {
      assert.equal(e.source, 'netlink');
      assert.equal(e.ifindex, iface.ifindex);
      assert.ok(e.detectedAt >= e.at && e.detectedAt - e.at < 1000);
    }
  });

  it('an overflow (tiny receive buffer, a burst of 400 changes) re-dumps and ends in exactly the kernel state', async () => {
    iface = testInterface([]);
    sock = openRtnetlink({ rcvbuf: 1 });
    const local = new Set<string>();
    const up = new Set<string>();
    const items: SourceItem[] = [];
    const source = netlinkSource(sock).pipe(share());
    const sub = source.subscribe((i) => {
      items.push(i);
      if (i.kind === 'added' && i.ifindex === iface!.ifindex && i.family === 4) local.add(i.address);
      if (i.kind === 'removed') local.delete(i.address);
    });
    // And through the pipeline: the set of addresses it says are up.
    sub.add(source.pipe(addressEvents({ floating: ['10.67.0.0/16'] })).subscribe((e) => (e.type === 'up' ? up.add(e.address) : up.delete(e.address))));
    await new Promise((r) => setTimeout(r, 100));
    // 300 additions then 100 removals while this loop is blocked in execFileSync: nobody reads.
    const adds = Array.from({ length: 300 }, (_, i) => `addr add 10.67.${i >> 7}.${(i & 127) + 1}/32 dev ${iface!.name}`);
    const dels = Array.from({ length: 100 }, (_, i) => `addr del 10.67.${i >> 7}.${(i & 127) + 1}/32 dev ${iface!.name}`);
    execFileSync('ip', ['-batch', '-'], { input: [...adds, ...dels].join('\n') });
    const want = kernelAddresses(iface.name);
    assert.equal(want.length, 200);
    for (let i = 0; i < 250 && (local.size !== 200 || !items.some((x) => x.kind === 'overflow')); i++) await new Promise((r) => setTimeout(r, 20));
    sub.unsubscribe();
    assert.ok(items.some((x) => x.kind === 'overflow'), 'an overflow was provoked');
    assert.deepEqual([...local].sort(), want);
    assert.deepEqual([...up].sort(), want);
  });

  it('a recording that overflows re-dumps into the trace, and its replay ends in the kernel state', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lockdrop-rec-'));
    try {
      iface = testInterface([]);
      sock = openRtnetlink({ rcvbuf: 1 });
      const out = join(dir, 'overflow.pcap');
      const recorder = recordTrace({ out, transport: sock });
      await recorder.ready;
      const adds = Array.from({ length: 300 }, (_, i) => `addr add 10.70.${i >> 7}.${(i & 127) + 1}/32 dev ${iface!.name}`);
      const dels = Array.from({ length: 50 }, (_, i) => `addr del 10.70.${i >> 7}.${(i & 127) + 1}/32 dev ${iface!.name}`);
      execFileSync('ip', ['-batch', '-'], { input: [...adds, ...dels].join('\n') });
      for (let i = 0; i < 100 && recorder.overflows === 0; i++) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 200));
      await recorder.stop();
      assert.ok(recorder.overflows > 0, 'an overflow was provoked');
      const up = new Set<string>();
      await lastValueFrom(replaySource(out, { pace: 'fast' }).pipe(addressEvents({ floating: ['10.70.0.0/16'] }), toArray())).then((es) => {
        for (const e of es) if (e.type === 'up') up.add(e.address); else up.delete(e.address);
      });
      assert.deepEqual([...up].sort(), kernelAddresses(iface.name));
      assert.equal(up.size, 250);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a recording replays to the same transitions the live pipeline saw', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lockdrop-rec-'));
    try {
      iface = testInterface([]);
      sock = openRtnetlink();
      const out = join(dir, 'live.pcap');
      const recorder = recordTrace({ out, transport: sock });
      await recorder.ready;
      const live: AddressEvent[] = [];
      const sub = watchAddresses([netlinkSource(sock)], { floating: ['10.68.0.0/16'] }).subscribe((e) => live.push(e));
      await new Promise((r) => setTimeout(r, 100));
      for (const cmd of [['add', '10.68.0.1/24'], ['add', '10.68.0.2/32'], ['del', '10.68.0.2/32']]) ip('addr', cmd[0], cmd[1], 'dev', iface.name);
      for (let i = 0; i < 250 && live.length < 3; i++) await new Promise((r) => setTimeout(r, 20));
      await recorder.stop();
      sub.unsubscribe();
      const replayed = await lastValueFrom(replaySource(out, { pace: 'fast' }).pipe(addressEvents({ floating: ['10.68.0.0/16'] }), toArray()));
      const brief = (es: AddressEvent[]): string[] => es.map((e) => `${e.type} ${e.address}%${e.ifindex}`);
      assert.deepEqual(brief(replayed), brief(live));
      assert.deepEqual(brief(live), [`up 10.68.0.1%${iface.ifindex}`, `up 10.68.0.2%${iface.ifindex}`, `down 10.68.0.2%${iface.ifindex}`]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('watch live: poll source alone', function () {
  let iface: ReturnType<typeof testInterface> | undefined;
  beforeEach(function () { requireNamespaceRoot(this); });
  afterEach(() => { iface?.dispose(); iface = undefined; });

  it('sees ip addr add and ip addr del in the test namespace', async () => {
    iface = testInterface([]);
    const events = watchAddresses([pollSource({ intervalMs: 50 })], { floating: ['10.69.0.0/16', 'fd69::/64'] });
    const seen: AddressEvent[] = [];
    const sub = events.subscribe((e) => seen.push(e));
    ip('addr', 'add', '10.69.0.5/24', 'dev', iface.name);
    ip('addr', 'add', 'fd69::5/64', 'dev', iface.name, 'nodad');
    for (let i = 0; i < 100 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    ip('addr', 'del', '10.69.0.5/24', 'dev', iface.name);
    for (let i = 0; i < 100 && seen.length < 3; i++) await new Promise((r) => setTimeout(r, 20));
    sub.unsubscribe();
    assert.deepEqual(seen.map((e) => `${e.type} ${e.address}`).sort(), ['down 10.69.0.5', 'up 10.69.0.5', 'up fd69::5']);
    assert.equal(seen[seen.length - 1].type, 'down');
    assert.ok(seen.every((e) => e.source === 'poll' && e.ifindex === iface!.ifindex), JSON.stringify(seen));
  });

  it('sees a tentative IPv6 address only once DAD completes', async () => {
    iface = testInterface([]);
    const items: AddressChange[] = [];
    const done = firstValueFrom(pollSource({ intervalMs: 50 }).pipe(
      filter((i): i is AddressChange => i.kind !== 'overflow' && i.address === 'fd69::7'),
      take(2), toArray(), timeout(8000)));
    ip('addr', 'add', 'fd69::7/64', 'dev', iface.name);
    items.push(...(await done));
    assert.deepEqual(items.map((i) => [i.kind, !!i.flags?.tentative]), [['added', true], ['added', false]]);
  });
});
