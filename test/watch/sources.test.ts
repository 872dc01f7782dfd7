// The sources against fakes: netlink over a fake rtnetlink transport (dump, notifications, links,
// overflow and resync, garbage), poll over fake snapshots, replay in virtual time.
import { strict as assert } from 'node:assert';
import { Subject, firstValueFrom, lastValueFrom, take, toArray } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import {
  NetlinkDumpError, addressEvents, netlink, netlinkSource, pollSource, replaySource,
  type AddressChange, type RtnetlinkOverflow, type SnapshotAddress, type SourceItem, type TraceRecord,
} from '../../src/watch';
import { parseIfInet6, parseIgmp } from '../../src/watch/sources/poll';
import { parseAddress } from '../../src/net';

const UP_RUNNING = netlink.IFF_UP | netlink.IFF_RUNNING;

/** A fake kernel: links and addresses, dump replies built from them, notifications on demand. */
class FakeKernel {
  links = new Map<number, number>([[1, UP_RUNNING | netlink.IFF_LOOPBACK], [3, UP_RUNNING]]);
  addrs = new Map<string, { ifindex: number; prefixLen: number; flags: number }>([['127.0.0.1', { ifindex: 1, prefixLen: 8, flags: 0x80 }]]);
  messages$ = new Subject<Buffer | RtnetlinkOverflow>();
  dumps = 0;
  /** Called during each dump (to model changes racing it). */
  duringDump?: () => void;
  failDump = false;

  dump = async (request: Buffer): Promise<Buffer[]> => {
    this.dumps++;
    const [req] = netlink.splitMessages(request);
    this.duringDump?.();
    await Promise.resolve();
    if (this.failDump) {
      const err = Buffer.alloc(20);
      err.writeInt32LE(-1, 0);
      request.copy(err, 4, 0, 16);
      return [netlink.encodeMessage({ type: netlink.NLMSG_ERROR, flags: 0, seq: req.seq }, err)];
    }
    const body = req.type === netlink.RTM_GETLINK
      ? [...this.links].map(([ifindex, flags]) => netlink.encodeLinkMessage({ op: 'new', ifindex, flags, seq: req.seq, multi: true }))
      : [...this.addrs].map(([a, v]) => netlink.encodeAddressMessage({ op: 'new', local: parseAddress(a), ...v, seq: req.seq, multi: true }));
    return [Buffer.concat(body), netlink.encodeDone(req.seq)];
  };

  addAddr(address: string, ifindex = 3, flags = 0x80, notify = true): void {
    this.addrs.set(address, { ifindex, prefixLen: 24, flags });
    if (notify) this.messages$.next(netlink.encodeAddressMessage({ op: 'new', local: parseAddress(address), ifindex, prefixLen: 24, flags }));
  }

  delAddr(address: string, notify = true): void {
    const a = this.addrs.get(address)!;
    this.addrs.delete(address);
    if (notify) this.messages$.next(netlink.encodeAddressMessage({ op: 'del', local: parseAddress(address), ...a }));
  }

  setLink(ifindex: number, flags: number): void {
    this.links.set(ifindex, flags);
    this.messages$.next(netlink.encodeLinkMessage({ op: 'new', ifindex, flags }));
  }
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const brief = (items: SourceItem[]): string[] => items.map((i) => (i.kind === 'overflow' ? 'overflow' : `${i.kind} ${i.address}%${i.ifindex}${i.flags?.tentative ? ' tentative' : ''}`));

async function collect(kernel: FakeKernel, act: () => Promise<void> | void): Promise<SourceItem[]> {
  const items: SourceItem[] = [];
  const sub = netlinkSource({ messages$: kernel.messages$, dump: kernel.dump }).subscribe({ next: (i) => items.push(i), error: (e) => items.push({ kind: 'overflow', source: 'netlink', at: 0, reason: `error ${e}` }) });
  await tick();
  await act();
  await tick();
  sub.unsubscribe();
  return items;
}

describe('watch netlink source (fake transport)', () => {
  it('dumps, then folds RTM_NEWADDR / RTM_DELADDR, with tentative flags and DAD completion', async () => {
    const k = new FakeKernel();
    k.addAddr('10.0.0.5', 3, 0x80, false);
    const items = await collect(k, () => {
      k.addAddr('fd00::5', 3, netlink.IFA_F_TENTATIVE);
      k.addAddr('fd00::5', 3, 0x80);
      k.delAddr('10.0.0.5');
      k.delAddr('fd00::5');
    });
    assert.deepEqual(brief(items), ['added 127.0.0.1%1', 'added 10.0.0.5%3', 'added fd00::5%3 tentative', 'added fd00::5%3', 'removed 10.0.0.5%3', 'removed fd00::5%3']);
    const first = items[1] as AddressChange;
    assert.deepEqual([first.source, first.family, first.prefixLen], ['netlink', 4, 24]);
  });

  it('a link going down removes its addresses, coming back up restores the IPv4 ones, deletion removes them', async () => {
    const k = new FakeKernel();
    k.addAddr('10.0.0.5', 3, 0x80, false);
    k.addAddr('10.0.0.6', 3, 0x80, false);
    const items = await collect(k, () => {
      k.setLink(3, netlink.IFF_UP); // up but not running yet: not usable
      k.setLink(3, UP_RUNNING);
      k.setLink(3, 0);
      k.setLink(3, UP_RUNNING);
      k.messages$.next(netlink.encodeLinkMessage({ op: 'del', ifindex: 3, flags: 0 }));
    });
    assert.deepEqual(brief(items).slice(1), [
      'added 10.0.0.5%3', 'added 10.0.0.6%3',
      'removed 10.0.0.5%3', 'removed 10.0.0.6%3', 'added 10.0.0.5%3', 'added 10.0.0.6%3',
      'removed 10.0.0.5%3', 'removed 10.0.0.6%3', 'added 10.0.0.5%3', 'added 10.0.0.6%3',
      'removed 10.0.0.5%3', 'removed 10.0.0.6%3',
    ]);
  });

  it('on overflow re-dumps and emits exactly the difference', async () => {
    const k = new FakeKernel();
    k.addAddr('10.0.0.5', 3, 0x80, false);
    k.addAddr('10.0.0.6', 3, 0x80, false);
    const items = await collect(k, async () => {
      // Changes whose notifications were lost:
      k.delAddr('10.0.0.5', false);
      k.addAddr('10.0.0.7', 3, 0x80, false);
      k.messages$.next({ overflow: true, reason: 'ENOBUFS' });
      await tick();
    });
    assert.deepEqual(brief(items).slice(3), ['overflow', 'removed 10.0.0.5%3', 'added 10.0.0.7%3']);
    assert.equal(k.dumps, 4);
  });

  it('dumps again while notifications race the dump, then reports the settled state', async () => {
    const k = new FakeKernel();
    let raced = 0;
    k.duringDump = () => {
      if (raced++ < 2) k.addAddr(`10.0.1.${raced}`);
    };
    const items = await collect(k, () => undefined);
    assert.deepEqual(brief(items), ['added 127.0.0.1%1', 'added 10.0.1.1%3', 'added 10.0.1.2%3']);
    assert.ok(k.dumps >= 4);
  });

  it('a malformed datagram counts as a gap: overflow marker, re-dump; the source keeps going', async () => {
    const k = new FakeKernel();
    const items = await collect(k, async () => {
      k.addrs.set('10.0.0.8', { ifindex: 3, prefixLen: 24, flags: 0x80 }); // its notification is the garbage below
      k.messages$.next(Buffer.from([0xff, 0, 0, 0, 20, 0, 0, 0]));
      await tick();
      k.addAddr('10.0.0.9');
    });
    assert.deepEqual(brief(items), ['added 127.0.0.1%1', 'overflow', 'added 10.0.0.8%3', 'added 10.0.0.9%3']);
    assert.match((items[1] as { reason: string }).reason, /malformed datagram/);
  });

  it('NLMSG_OVERRUN from the kernel is a gap too', async () => {
    const k = new FakeKernel();
    const items = await collect(k, async () => {
      k.addrs.set('10.0.0.8', { ifindex: 3, prefixLen: 24, flags: 0x80 });
      k.messages$.next(netlink.encodeMessage({ type: netlink.NLMSG_OVERRUN, flags: 0 }, Buffer.alloc(0)));
      await tick();
    });
    assert.deepEqual(brief(items), ['added 127.0.0.1%1', 'overflow', 'added 10.0.0.8%3']);
  });

  it('a failing dump errors the source with NetlinkDumpError', async () => {
    const k = new FakeKernel();
    k.failDump = true;
    await assert.rejects(firstValueFrom(netlinkSource({ messages$: k.messages$, dump: k.dump })), NetlinkDumpError);
  });
});

describe('watch poll source (fake snapshots)', () => {
  const snap = (...addrs: string[]): SnapshotAddress[] => addrs.map((a) => ({
    family: a.includes(':') ? netlink.AF_INET6 : netlink.AF_INET, local: a.replace('!', ''), prefixLen: 24, flags: a.endsWith('!') ? netlink.IFA_F_TENTATIVE : 0, ifindex: 3, label: 'eth0',
  }));

  it('emits the first snapshot, then only the differences; a failed snapshot is skipped', async () => {
    const snapshots = [snap('10.0.0.5', 'fd00::5!'), snap('10.0.0.5', 'fd00::5!'), null, snap('10.0.0.6', 'fd00::5')];
    let n = 0;
    const items = await lastValueFrom(pollSource({
      intervalMs: 5,
      snapshot: () => {
        const s = snapshots[Math.min(n++, snapshots.length - 1)];
        return s ? Promise.resolve(s) : Promise.reject(new Error('EIO'));
      },
    }).pipe(take(5), toArray()));
    assert.deepEqual(brief(items), ['added 10.0.0.5%3', 'added fd00::5%3 tentative', 'removed 10.0.0.5%3', 'added fd00::5%3', 'added 10.0.0.6%3']);
    assert.ok(items.every((i) => i.kind !== 'overflow' && i.source === 'poll'));
  });

  it('parses /proc/net/if_inet6 and /proc/net/igmp', () => {
    const v6 = parseIfInet6('fe8000000000000000fc00fffe000001 04 40 20 80     eth0\nfd000000000000000000000000000005 0a 40 00 c0     ld0\nshort line\n');
    assert.deepEqual(v6.get('fe80::fc:ff:fe00:1%eth0'), { ifindex: 4, prefixLen: 64, flags: 0x80 });
    assert.deepEqual(v6.get('fd00::5%ld0'), { ifindex: 10, prefixLen: 64, flags: 0xc0 });
    const igmp = parseIgmp('Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter\n1\tlo        :     1      V3\n\t\t\t\t010000E0     1 0:00000000\t\t0\n4\teth0      :     1      V3\n');
    assert.deepEqual([...igmp], [['lo', 1], ['eth0', 4]]);
  });
});

describe('watch replay source', () => {
  const t0 = 1_700_000_000_000;
  const trace: TraceRecord[] = [
    { at: t0, from: 'user', protocol: 0, datagram: netlink.encodeGetAddrDump(7) },
    { at: t0 + 1, from: 'kernel', protocol: 0, datagram: Buffer.concat([netlink.encodeAddressMessage({ op: 'new', local: parseAddress('10.0.0.5'), prefixLen: 24, ifindex: 3, seq: 7, multi: true }), netlink.encodeDone(7)]) },
    { at: t0 + 100, from: 'kernel', protocol: 0, datagram: netlink.encodeAddressMessage({ op: 'new', local: parseAddress('10.0.0.6'), prefixLen: 24, ifindex: 3 }) },
    { at: t0 + 150, from: 'kernel', protocol: 16, datagram: Buffer.from('not route netlink') },
    { at: t0 + 250, from: 'kernel', protocol: 0, datagram: netlink.encodeAddressMessage({ op: 'del', local: parseAddress('10.0.0.5'), prefixLen: 24, ifindex: 3 }) },
    { at: t0 + 260, from: 'kernel', protocol: 0, datagram: Buffer.from([1, 2, 3]) },
    // A later full dump is a snapshot: 10.0.0.6 is gone from it.
    { at: t0 + 300, from: 'user', protocol: 0, datagram: netlink.encodeGetAddrDump(8) },
    { at: t0 + 301, from: 'kernel', protocol: 0, datagram: netlink.encodeDone(8) },
  ];

  it('keeps the recorded spacing in virtual time', () => {
    const ts = new TestScheduler((a, e) => assert.deepEqual(a, e));
    ts.run(({ expectObservable }) => {
      const a = (kind: 'added' | 'removed', address: string, at: number): AddressChange => ({ address, family: 4, prefixLen: 24, ifindex: 3, kind, source: 'replay', at });
      expectObservable(replaySource(trace, { scheduler: ts })).toBe('-a 98ms b 149ms c 9ms o 40ms (d|)', {
        a: a('added', '10.0.0.5', 1),
        b: a('added', '10.0.0.6', 100),
        c: a('removed', '10.0.0.5', 250),
        o: { kind: 'overflow', source: 'replay', at: 260, reason: 'malformed datagram: truncated nlmsghdr: 3 bytes left (at byte 0)' },
        d: a('removed', '10.0.0.6', 301),
      });
    });
  });

  it('an nlmon-style capture: ip addr del requests are remove-intents, a failed ack ends the drain', async () => {
    const ack = (seq: number, errno: number): Buffer => {
      const body = Buffer.alloc(20);
      body.writeInt32LE(-errno, 0);
      netlink.encodeMessage({ type: netlink.RTM_DELADDR, flags: netlink.NLM_F_REQUEST | netlink.NLM_F_ACK, seq }, Buffer.alloc(0)).copy(body, 4, 0, 16);
      return netlink.encodeMessage({ type: netlink.NLMSG_ERROR, flags: 0, seq, pid: 4443 }, body);
    };
    const del = (address: string, seq: number): Buffer => netlink.encodeAddressMessage({ op: 'del', local: parseAddress(address), prefixLen: 24, ifindex: 3, request: true, seq });
    const dumped = (address: string, seq: number): Buffer => netlink.encodeAddressMessage({ op: 'new', local: parseAddress(address), prefixLen: 24, ifindex: 3, seq, multi: true });
    const nlmon: TraceRecord[] = [
      { at: t0, from: 'user', protocol: 0, datagram: netlink.encodeGetAddrDump(7) },
      { at: t0 + 1, from: 'kernel', protocol: 0, datagram: Buffer.concat([dumped('10.0.0.5', 7), dumped('10.0.0.6', 7), netlink.encodeDone(7)]) },
      { at: t0 + 10, from: 'user', protocol: 0, datagram: del('10.0.0.5', 100) },
      { at: t0 + 11, from: 'kernel', protocol: 0, datagram: netlink.encodeAddressMessage({ op: 'del', local: parseAddress('10.0.0.5'), prefixLen: 24, ifindex: 3 }) },
      { at: t0 + 12, from: 'kernel', protocol: 0, datagram: ack(100, 0) },
      { at: t0 + 20, from: 'user', protocol: 0, datagram: del('10.0.0.6', 101) },
      { at: t0 + 21, from: 'kernel', protocol: 0, datagram: ack(101, 99) }, // EADDRNOTAVAIL (wrong prefix, say)
      { at: t0 + 30, from: 'user', protocol: 0, datagram: del('10.0.0.9', 102) }, // not local: nothing to drain
      { at: t0 + 31, from: 'kernel', protocol: 0, datagram: ack(102, 99) },
    ];
    const events = await lastValueFrom(replaySource(nlmon, { pace: 'fast' }).pipe(addressEvents(), toArray()));
    assert.deepEqual(events.map((e) => `${e.type} ${e.address}`), ['up 10.0.0.5', 'up 10.0.0.6', 'draining 10.0.0.5', 'down 10.0.0.5', 'draining 10.0.0.6', 'drain-ended 10.0.0.6']);
  });
});
