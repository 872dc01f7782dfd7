// The one address normalisation, formatting, CIDR matching and loopback tests.
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import {
  AddressParseError, cidrContains, familyOf, formatAddress, isAddress, isLinkLocal, isLoopback, isNetwork, networkSet, normaliseAddress, parseAddress, parseCidr,
} from '../../src/net';

describe('net addresses', () => {
  it('normalises to RFC 5952 text, IPv4-mapped to IPv4', () => {
    const cases: Array<[string, string]> = [
      ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'], // upper case, uncompressed: the operator's spelling
      ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // the first of equal runs
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero word stays
      ['2001:db8:0:0:1:0:0:0', '2001:db8:0:0:1::'], // the longest run, even last
      ['::', '::'],
      ['::1', '::1'],
      ['0:0:0:0:0:0:0:1', '::1'],
      ['fe80::', 'fe80::'],
      ['::ffff:10.0.0.5', '10.0.0.5'],
      ['::FFFF:10.0.0.5', '10.0.0.5'],
      ['::ffff:0a00:0005', '10.0.0.5'], // the same mapped address in hex words
      ['0:0:0:0:0:ffff:a00:5', '10.0.0.5'],
      ['::10.0.0.5', '::a00:5'], // IPv4-compatible (deprecated) is not mapped
      ['64:ff9b::192.0.2.1', '64:ff9b::c000:201'],
      ['FD00::A:5', 'fd00::a:5'],
      ['10.0.0.5', '10.0.0.5'],
      ['0.0.0.0', '0.0.0.0'],
    ];
    for (const [input, want] of cases) assert.equal(normaliseAddress(input), want, input);
    for (const bad of ['10.0.0.256', '010.0.0.1', '10.0.0', 'fd00:::1', '1:2:3:4:5:6:7:8:9', 'host.example', '', ' 10.0.0.1', 'fe80::1%', '10.0.0.1%eth0']) {
      assert.throws(() => normaliseAddress(bad), AddressParseError, bad);
      assert.equal(isAddress(bad), false, bad);
    }
  });

  it('keeps a zone id verbatim and ignores it in bytes and networks', () => {
    assert.equal(normaliseAddress('FE80::0001%eth0'), 'fe80::1%eth0');
    assert.equal(normaliseAddress('fe80::1%Eth0'), 'fe80::1%Eth0'); // interface names are case-sensitive
    assert.equal(normaliseAddress('fe80::1%3'), 'fe80::1%3');
    assert.equal(normaliseAddress('::ffff:10.0.0.5%eth0'), '10.0.0.5'); // IPv4 has no zones
    assert.deepEqual(parseAddress('fe80::1%eth0'), parseAddress('fe80::1'));
    assert.ok(cidrContains(parseCidr('fe80::/10'), 'fe80::1%eth0'));
    assert.ok(isLinkLocal('fe80::1%eth0') && isLinkLocal('FEBF::1') && !isLinkLocal('fec0::1') && !isLinkLocal('10.0.0.1'));
  });

  it('formats bytes: IPv4, IPv6, mapped IPv4, at an offset', () => {
    assert.equal(formatAddress(Buffer.from([10, 0, 0, 5])), '10.0.0.5');
    assert.equal(formatAddress(Buffer.from('20010db8000000000000000000000001', 'hex')), '2001:db8::1');
    assert.equal(formatAddress(Buffer.from('00000000000000000000ffff0a000005', 'hex')), '10.0.0.5');
    assert.equal(formatAddress(Buffer.from('ff20010db8000000000000000000000001ff', 'hex'), 1, 16), '2001:db8::1');
    assert.throws(() => formatAddress(Buffer.alloc(5)), AddressParseError);
    assert.deepEqual([familyOf('10.0.0.1'), familyOf('::ffff:10.0.0.1'), familyOf('fd00::1')], [4, 4, 6]);
  });

  it('agrees with the WHATWG URL host parser on every IPv6 address, and round-trips (property)', () => {
    const word = fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffff }));
    fc.assert(fc.property(fc.array(word, { minLength: 8, maxLength: 8 }), fc.boolean(), (words, upper) => {
      const bytes = Buffer.alloc(16);
      words.forEach((w, i) => bytes.writeUInt16BE(w, i * 2));
      const text = normaliseAddress(words.map((w) => (upper ? w.toString(16).toUpperCase() : w.toString(16).padStart(4, '0'))).join(':'));
      assert.equal(text, formatAddress(bytes));
      assert.deepEqual(parseAddress(text).length === 4 ? Buffer.concat([Buffer.from('00000000000000000000ffff', 'hex'), parseAddress(text)]) : parseAddress(text), bytes);
      assert.equal(normaliseAddress(text), text, 'canonical text is a fixed point');
      if (parseAddress(text).length === 16) {
        // URL prints RFC 5952 too (without the mapped-IPv4 rule).
        assert.equal(new URL(`http://[${text}]/`).hostname, `[${text}]`);
      }
    }), { numRuns: 2000 });
  });

  it('matches CIDRs of either family, never across families', () => {
    assert.ok(cidrContains(parseCidr('10.0.0.0/8'), '10.255.1.2'));
    assert.ok(!cidrContains(parseCidr('10.0.0.0/9'), '10.128.0.1'));
    assert.ok(cidrContains(parseCidr('192.168.1.0/23'), '192.168.0.7'));
    assert.ok(cidrContains(parseCidr('fd00::/7'), 'fdff::1'));
    assert.ok(!cidrContains(parseCidr('fd00::/8'), 'fe00::1'));
    assert.ok(!cidrContains(parseCidr('::/0'), '10.0.0.1'));
    assert.ok(cidrContains(parseCidr('0.0.0.0/0'), '10.0.0.1'));
    assert.ok(cidrContains(parseCidr('10.0.0.0/8'), '::ffff:10.1.2.3'), 'a mapped address is its IPv4 address');
    assert.ok(cidrContains(parseCidr('::ffff:10.0.0.0/104'), '10.1.2.3') && !cidrContains(parseCidr('::ffff:10.0.0.0/104'), '11.1.2.3'), 'a mapped network is its IPv4 network');
    assert.ok(cidrContains(parseCidr('2001:DB8:0:0:0:0:0:0/32'), '2001:db8:ffff::1'));
    assert.ok(cidrContains(parseCidr('10.0.0.5'), '10.0.0.5') && !cidrContains(parseCidr('10.0.0.5'), '10.0.0.6'));
    for (const bad of ['10.0.0.0/33', 'fd00::/129', '10.0.0.0/x', '10.0.0.0/', '10.0.0.0/8/8', '10.0.0.0/-1', 'nothing/8']) {
      assert.throws(() => parseCidr(bad), AddressParseError, bad);
      assert.equal(isNetwork(bad), false, bad);
    }
    assert.ok(isNetwork('10.0.0.0/8') && isNetwork('2001:db8::1') && isNetwork('FD00::/8'));
  });

  it('a network set tests any spelling and refuses a malformed network', () => {
    const s = networkSet(['10.0.0.0/24', '2001:db8::/64', '192.0.2.7']);
    assert.deepEqual(['10.0.0.9', '::ffff:10.0.0.9', '10.0.1.9', '2001:DB8:0:0:0:0:0:1', '2001:db8:1::1', '192.0.2.7', '192.0.2.8', 'garbage', ''].map(s),
      [true, true, false, true, false, true, false, false, false]);
    assert.equal(networkSet([])('10.0.0.1'), false);
    assert.throws(() => networkSet(['10.0.0.0/33']), AddressParseError);
  });

  it('tells loopback addresses in every spelling', () => {
    assert.deepEqual(['127.0.0.1', '127.9.9.9', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', '10.0.0.1', '::', 'fe80::1', 'nonsense'].map(isLoopback),
      [true, true, true, true, true, false, false, false, false]);
  });
});
