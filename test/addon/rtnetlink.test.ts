import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { firstValueFrom, filter, take, toArray, timeout } from 'rxjs';
import { addonStatus, openRtnetlink, rtnetlinkDump, type RtnetlinkSocket } from '../../src/addon';
import { ip, requireNamespaceRoot } from '../support/netns';
import { netlink } from '../../src/watch';

const { NLMSG_DONE, NLMSG_ERROR, RTM_DELADDR, RTM_NEWADDR, splitMessages } = netlink;
const getAddrRequest = (seq: number): Buffer => netlink.encodeGetAddrDump(seq);
/** True when an address message's attributes carry this IPv4 address. */
const carriesIPv4 = (m: netlink.NetlinkMessage, address: string): boolean => m.payload.includes(Buffer.from(address.split('.').map(Number)));
import { testInterface } from '../support/netns';

const messagesOf = (item: Buffer | { overflow: true }) => (Buffer.isBuffer(item) ? splitMessages(item) : []);

describe('addon: loading', () => {
  it('loads the built addon', () => {
    assert.deepEqual(addonStatus(), { available: true });
  });

  it('reports AddonUnavailable with the reason when forced off, without crashing', () => {
    const out = execFileSync(process.execPath, ['-r', 'tsx/cjs', '-e', `
      const a = require('./src/addon');
      const s = a.addonStatus();
      let name = '';
      try { a.openRtnetlink(); } catch (e) { name = e.name; }
      console.log(JSON.stringify({ s, name }));`], { env: { ...process.env, LOCKDROP_NO_ADDON: '1' }, encoding: 'utf8' });
    const { s, name } = JSON.parse(out);
    assert.equal(s.available, false);
    assert.match(s.reason, /LOCKDROP_NO_ADDON/);
    assert.equal(name, 'AddonUnavailable');
  });
});

describe('addon: rtnetlink', function () {
  let sock: RtnetlinkSocket | undefined;
  let dummy: { name: string; dispose(): void } | undefined;
  beforeEach(function () {
    requireNamespaceRoot(this);
  });
  afterEach(() => {
    sock?.close();
    dummy?.dispose();
    sock = dummy = undefined;
  });

  it('sees ip addr add and del on a test interface', async () => {
    dummy = testInterface([]);
    sock = openRtnetlink();
    const seen = firstValueFrom(sock.messages$.pipe(
      filter((d) => messagesOf(d).some((m) => (m.type === RTM_NEWADDR || m.type === RTM_DELADDR) && carriesIPv4(m, '10.77.1.1'))),
      take(2), toArray(), timeout(5000)));
    ip('addr', 'add', '10.77.1.1/32', 'dev', dummy.name);
    ip('addr', 'del', '10.77.1.1/32', 'dev', dummy.name);
    const types = (await seen).map((d) => messagesOf(d).find((m) => carriesIPv4(m, '10.77.1.1'))!.type);
    assert.deepEqual(types, [RTM_NEWADDR, RTM_DELADDR]);
  });

  it('reports an overflow on a tiny receive buffer and keeps working', async () => {
    dummy = testInterface([]);
    sock = openRtnetlink({ rcvbuf: 1 });
    const items: Array<Buffer | { overflow: true; reason: string }> = [];
    sock.messages$.subscribe((i) => items.push(i));
    // ip -batch runs while this loop is blocked in execFileSync: nobody reads, the buffer overflows.
    const batch = Array.from({ length: 300 }, (_, i) => `addr add 10.78.${i >> 7}.${(i & 127) + 1}/32 dev ${dummy!.name}`).join('\n');
    execFileSync('ip', ['-batch', '-'], { input: batch });
    await new Promise((r) => setTimeout(r, 200));
    const overflow = items.find((i) => !Buffer.isBuffer(i));
    assert.ok(overflow, 'an overflow notice');
    assert.match((overflow as { reason: string }).reason, /ENOBUFS/);
    const after = firstValueFrom(sock.messages$.pipe(filter((d) => messagesOf(d).some((m) => m.type === RTM_NEWADDR && carriesIPv4(m, '10.79.0.1'))), timeout(5000)));
    ip('addr', 'add', '10.79.0.1/32', 'dev', dummy.name);
    await after;
  });

  it('dumps the current addresses', async () => {
    dummy = testInterface(['10.77.2.1/24']);
    const replies = await rtnetlinkDump(getAddrRequest(7));
    const msgs = replies.flatMap(splitMessages);
    assert.ok(msgs.some((m) => m.type === RTM_NEWADDR && carriesIPv4(m, '10.77.2.1')));
    assert.ok(msgs.every((m) => m.seq === 7));
    assert.equal(msgs.at(-1)!.type, NLMSG_DONE);
  });

  it('answers a bad request with the kernel error, and a short one with a TypeError', async () => {
    const bad = getAddrRequest(9);
    bad.writeUInt16LE(0x7ff, 4); // no such message type
    const msgs = (await rtnetlinkDump(bad)).flatMap(splitMessages);
    assert.equal(msgs[0].type, NLMSG_ERROR);
    assert.ok(msgs[0].payload.readInt32LE(0) < 0);
    await assert.rejects(rtnetlinkDump(Buffer.alloc(4)), TypeError);
  });

  it('completes messages$ on close', async () => {
    sock = openRtnetlink();
    const done = firstValueFrom(sock.messages$.pipe(toArray()));
    sock.close();
    assert.deepEqual(await done, []);
    assert.ok(sock.receiveBufferSize !== undefined);
  });
});
