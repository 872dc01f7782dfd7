// The pure codecs: netlink messages (against kernel bytes from the fixtures, and garbage), pcap
// traces (tshark dissects ours), addresses and CIDRs.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { parseAddress } from '../../src/net';
import {
  NetlinkDecodeError, PcapDecodeError, TraceWriter, decodeDatagram, decodePcap,
  encodePcapHeader, encodePcapRecord, netlink, readTrace,
} from '../../src/watch';
import { hasCommand } from '../support/netns';

const fixture = (name: string): string => join(__dirname, '..', 'fixtures', 'netlink', `${name}.pcap`);

describe('watch netlink codec', () => {
  it('decodes the kernel messages of a recorded trace: links, addresses, flags, dump ends', () => {
    const msgs = readTrace(fixture('link-down')).filter((r) => r.from === 'kernel').flatMap((r) => decodeDatagram(r.datagram));
    const lo = msgs.find((m) => m.kind === 'link' && m.ifname === 'lo');
    assert.ok(lo && lo.kind === 'link');
    assert.equal(lo.ifindex, 1);
    assert.equal(lo.flags & (netlink.IFF_UP | netlink.IFF_LOOPBACK | netlink.IFF_RUNNING), netlink.IFF_UP | netlink.IFF_LOOPBACK | netlink.IFF_RUNNING);
    const v4 = msgs.find((m) => m.kind === 'address' && m.local === '10.0.1.5');
    assert.ok(v4 && v4.kind === 'address');
    assert.deepEqual([v4.family, v4.prefixLen, v4.label, v4.flags & netlink.IFA_F_PERMANENT], [netlink.AF_INET, 24, 'ld0', netlink.IFA_F_PERMANENT]);
    assert.equal(v4.header.flags & netlink.NLM_F_MULTI, netlink.NLM_F_MULTI); // a dump reply
    assert.ok(v4.cacheInfo && v4.cacheInfo.valid === 0xffffffff);
    const v6del = msgs.find((m) => m.kind === 'address' && m.op === 'del');
    assert.ok(v6del && v6del.kind === 'address');
    assert.deepEqual([v6del.family, v6del.local, v6del.prefixLen], [netlink.AF_INET6, 'fd00:1::5', 64]);
    assert.ok(msgs.some((m) => m.kind === 'done'));
    const down = msgs.find((m) => m.kind === 'link' && m.ifname === 'ld0' && !(m.flags & netlink.IFF_UP));
    assert.ok(down, 'the link-down notification');
  });

  it('sees IFA_F_TENTATIVE in IFA_FLAGS of an address doing DAD', () => {
    const msgs = readTrace(fixture('addr-v6')).flatMap((r) => (r.from === 'kernel' ? decodeDatagram(r.datagram) : []));
    const fd5 = msgs.flatMap((m) => (m.kind === 'address' && m.local === 'fd00::5' && m.op === 'new' ? [m.flags] : []));
    assert.ok(fd5.length >= 2);
    assert.ok(fd5[0] & netlink.IFA_F_TENTATIVE);
    assert.ok(!(fd5[fd5.length - 1] & netlink.IFA_F_TENTATIVE));
  });

  it('round-trips what it encodes: dump requests, address and link messages, several per datagram', () => {
    const d = Buffer.concat([
      netlink.encodeAddressMessage({ op: 'new', local: parseAddress('10.1.2.3'), prefixLen: 24, ifindex: 7, label: 'eth0:1', flags: 0x181, seq: 9, multi: true }),
      netlink.encodeAddressMessage({ op: 'del', local: parseAddress('2001:db8::1'), prefixLen: 64, ifindex: 7, flags: netlink.IFA_F_TENTATIVE }),
      netlink.encodeLinkMessage({ op: 'del', ifindex: 7, flags: 0, ifname: 'eth0' }),
      netlink.encodeDone(9),
    ]);
    const [a, b, l, done] = decodeDatagram(d);
    assert.ok(a.kind === 'address' && b.kind === 'address' && l.kind === 'link');
    assert.deepEqual([a.op, a.local, a.prefixLen, a.ifindex, a.label, a.flags, a.header.seq], ['new', '10.1.2.3', 24, 7, 'eth0:1', 0x181, 9]);
    assert.deepEqual([b.op, b.local, b.flags], ['del', '2001:db8::1', netlink.IFA_F_TENTATIVE]);
    assert.deepEqual([l.op, l.ifindex, l.ifname], ['del', 7, 'eth0']);
    assert.equal(done.kind, 'done');
    const [req] = netlink.splitMessages(netlink.encodeGetAddrDump(5, netlink.AF_INET6));
    assert.deepEqual([req.type, req.flags, req.seq, req.payload.length, req.payload[0]], [netlink.RTM_GETADDR, netlink.NLM_F_REQUEST | netlink.NLM_F_DUMP, 5, 8, netlink.AF_INET6]);
    const [lreq] = netlink.splitMessages(netlink.encodeGetLinkDump(6));
    assert.deepEqual([lreq.type, lreq.payload.length], [netlink.RTM_GETLINK, 16]);
  });

  it('decodes NLMSG_ERROR (errno and the failed request) and NLMSG_OVERRUN', () => {
    const err = Buffer.alloc(20);
    err.writeInt32LE(-99, 0); // EADDRNOTAVAIL
    netlink.encodeGetAddrDump(3).copy(err, 4, 0, 16);
    const [e, o] = decodeDatagram(Buffer.concat([netlink.encodeMessage({ type: netlink.NLMSG_ERROR, flags: 0 }, err), netlink.encodeMessage({ type: netlink.NLMSG_OVERRUN, flags: 0 }, Buffer.alloc(0))]));
    assert.ok(e.kind === 'error');
    assert.equal(e.errno, 99);
    assert.deepEqual(e.request, { type: netlink.RTM_GETADDR, flags: netlink.NLM_F_REQUEST | netlink.NLM_F_DUMP, seq: 3, pid: 0 });
    assert.equal(o.kind, 'overrun');
  });

  it('truncated or malformed input raises NetlinkDecodeError', () => {
    const good = netlink.encodeAddressMessage({ op: 'new', local: parseAddress('10.1.2.3'), prefixLen: 24, ifindex: 7 });
    const cases: Buffer[] = [
      good.subarray(0, 10), // header cut
      good.subarray(0, good.length - 4), // nlmsg_len past the end
      Buffer.from([8, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), // nlmsg_len < 16
      netlink.encodeMessage({ type: netlink.RTM_NEWADDR, flags: 0 }, Buffer.alloc(4)), // ifaddrmsg cut
      netlink.encodeMessage({ type: netlink.RTM_NEWLINK, flags: 0 }, Buffer.alloc(8)), // ifinfomsg cut
      netlink.encodeMessage({ type: netlink.NLMSG_ERROR, flags: 0 }, Buffer.alloc(2)),
      netlink.encodeMessage({ type: netlink.RTM_NEWADDR, flags: 0 }, Buffer.from([2, 24, 0, 0, 1, 0, 0, 0, 7, 0, 1, 0, 1, 2, 3, 0])), // 3-byte IPv4 address
      netlink.encodeMessage({ type: netlink.RTM_NEWADDR, flags: 0 }, Buffer.from([2, 24, 0, 0, 1, 0, 0, 0, 40, 0, 1, 0, 1, 2, 3, 4])), // rta_len past the end
      netlink.encodeMessage({ type: netlink.RTM_NEWADDR, flags: 0 }, Buffer.from([2, 24, 0, 0, 1, 0, 0, 0, 2, 0, 1, 0])), // rta_len < 4
      netlink.encodeMessage({ type: netlink.RTM_NEWADDR, flags: 0 }, Buffer.from([10, 64, 0, 0, 1, 0, 0, 0, 6, 0, 8, 0, 1, 0, 0, 0])), // IFA_FLAGS of 2 bytes
    ];
    for (const c of cases) assert.throws(() => decodeDatagram(c), NetlinkDecodeError, c.toString('hex'));
  });

  it('any byte string decodes or raises NetlinkDecodeError, nothing else (fuzz)', () => {
    const header = fc.record({ type: fc.constantFrom(1, 2, 3, 4, 16, 17, 20, 21, 99), flags: fc.integer({ min: 0, max: 0xffff }) });
    fc.assert(fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.tuple(header, fc.uint8Array({ maxLength: 120 }))), (input) => {
      const buf = input instanceof Uint8Array ? Buffer.from(input) : netlink.encodeMessage(input[0], Buffer.from(input[1]));
      try {
        decodeDatagram(buf);
      } catch (err) {
        assert.ok(err instanceof NetlinkDecodeError, String(err));
      }
    }), { numRuns: 3000 });
  });
});

describe('watch pcap traces', () => {
  let dir: string;
  before(() => { dir = mkdtempSync(join(tmpdir(), 'lockdrop-pcap-')); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes what it reads: time (µs), direction, protocol, datagram', () => {
    const path = join(dir, 'rt.pcap');
    const w = new TraceWriter(path);
    const recs = [
      { at: 1700000000123.456, from: 'user' as const, protocol: 0, datagram: netlink.encodeGetAddrDump(1) },
      { at: 1700000000124.001, from: 'kernel' as const, protocol: 0, datagram: netlink.encodeDone(1) },
    ];
    for (const r of recs) w.write(r);
    w.close();
    const back = readTrace(path);
    assert.equal(back.length, 2);
    for (let i = 0; i < 2; i++) {
      assert.ok(Math.abs(back[i].at - recs[i].at) < 0.001);
      assert.deepEqual([back[i].from, back[i].protocol, back[i].datagram], [recs[i].from, recs[i].protocol, recs[i].datagram]);
    }
  });

  it('reads big-endian and nanosecond files, and rejects what is not a netlink pcap with PcapDecodeError', () => {
    const rec = encodePcapRecord({ at: 1000.5, from: 'kernel', protocol: 0, datagram: netlink.encodeDone(1) });
    // The same file with a nanosecond-resolution header: 500 µs = 500000 ns.
    const ns = Buffer.concat([encodePcapHeader(), rec]);
    ns.writeUInt32LE(0xa1b23c4d, 0);
    ns.writeUInt32LE(500000, 24 + 4);
    assert.equal(decodePcap(ns)[0].at, 1000.5);
    const be = Buffer.concat([encodePcapHeader(), rec]);
    for (const [off, size] of [[0, 4], [4, 2], [6, 2], [16, 4], [20, 4], [24, 4], [28, 4], [32, 4], [36, 4]] as const) {
      if (size === 4) be.writeUInt32BE(be.readUInt32LE(off), off);
      else be.writeUInt16BE(be.readUInt16LE(off), off);
    }
    assert.equal(decodePcap(be)[0].at, 1000.5);
    const eth = Buffer.concat([encodePcapHeader(), rec]);
    eth.writeUInt32LE(1, 20);
    const bad = [Buffer.alloc(10), Buffer.alloc(24), eth, Buffer.concat([encodePcapHeader(), rec.subarray(0, 20)]), Buffer.concat([encodePcapHeader(), rec.subarray(0, rec.length - 1)])];
    const hatype = Buffer.concat([encodePcapHeader(), rec]);
    hatype.writeUInt16BE(1, 24 + 16 + 2);
    bad.push(hatype);
    for (const b of bad) assert.throws(() => decodePcap(b), PcapDecodeError);
    fc.assert(fc.property(fc.uint8Array({ maxLength: 80 }), (tail) => {
      try { decodePcap(Buffer.concat([encodePcapHeader(), Buffer.from(tail)])); } catch (err) { assert.ok(err instanceof PcapDecodeError, String(err)); }
    }), { numRuns: 1000 });
  });

  it('tshark dissects every fixture as Linux rtnetlink with no malformed packets or warnings', function () {
    if (!hasCommand('tshark')) this.skip();
    this.timeout(60000); // five tshark runs: seconds normally, more on a loaded machine
    for (const name of ['addr-v4', 'addr-v6', 'link-down', 'link-del', 'burst-1000']) {
      // One line per packet: its protocols, then any malformed mark or expert severity.
      const lines = execFileSync('tshark', ['-r', fixture(name), '-T', 'fields', '-E', 'separator=|', '-e', 'frame.protocols', '-e', '_ws.malformed', '-e', '_ws.expert.severity'], {
        encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 1 << 26,
      }).trim().split('\n');
      assert.equal(lines.length, readTrace(fixture(name)).length, name);
      for (const line of lines) {
        const [protocols, malformed, severity] = line.split('|');
        assert.match(protocols, /^netlink(:netlink-route)*(:data)?$/, `${name}: ${line}`);
        assert.equal(malformed, '', `${name}: ${line}`);
        assert.ok(severity === '' || Number(severity) < 0x600000, `${name}: ${line}`); // below PI_WARN
      }
      assert.ok(lines.filter((l) => l.startsWith('netlink:netlink-route')).length >= lines.length / 2, name);
    }
  });

  it('reads pcapng as tshark writes it (same records as the pcap), and rejects broken pcapng with PcapDecodeError', function () {
    if (!hasCommand('tshark')) this.skip();
    const path = join(dir, 'v6.pcapng');
    execFileSync('tshark', ['-r', fixture('addr-v6'), '-F', 'pcapng', '-w', path], { stdio: 'ignore' });
    const ng = readTrace(path);
    const classic = readTrace(fixture('addr-v6'));
    assert.equal(ng.length, classic.length);
    ng.forEach((r, i) => {
      assert.deepEqual([r.from, r.protocol, r.datagram], [classic[i].from, classic[i].protocol, classic[i].datagram]);
      assert.ok(Math.abs(r.at - classic[i].at) < 0.002, `${r.at} vs ${classic[i].at}`);
    });
    const file = readFileSync(path);
    for (const cut of [20, 100, file.length - 3]) assert.throws(() => decodePcap(file.subarray(0, cut)), PcapDecodeError, String(cut));
    const headers = file.readUInt32LE(4) + file.readUInt32LE(file.readUInt32LE(4) + 4); // section header + interface
    fc.assert(fc.property(fc.uint8Array({ maxLength: 120 }), (tail) => {
      try { decodePcap(Buffer.concat([file.subarray(0, headers), Buffer.from(tail)])); } catch (err) { assert.ok(err instanceof PcapDecodeError, String(err)); }
    }), { numRuns: 1000 });
  });

  it('tshark decodes the address of a written record', function () {
    if (!hasCommand('tshark')) this.skip();
    const path = join(dir, 'one.pcap');
    writeFileSync(path, Buffer.concat([
      encodePcapHeader(),
      encodePcapRecord({ at: Date.now(), from: 'kernel', protocol: 0, datagram: netlink.encodeAddressMessage({ op: 'del', local: parseAddress('10.0.0.5'), prefixLen: 24, ifindex: 3, label: 'eth0' }) }),
    ]));
    const out = execFileSync('tshark', ['-r', path, '-V'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    assert.match(out, /Delete IP address/);
    assert.match(out, /Address: 10\.0\.0\.5/);
    assert.match(out, /Link-layer address type: Netlink \(824\)/);
  });
});
