import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  ExportsTable,
  FileHandleError,
  foldUuid,
  knfsdHandle,
  parseKnfsdHandle,
  uuidBytes,
  type KnfsdFsid,
} from '../../src/exports';

// Annotated handles as a little-endian (x86) knfsd writes them: header | fsid | fileid.
// fileid type 1 = FILEID_INO32_GEN: 4-byte inode + 4-byte generation.
const hex = (...parts: string[]) => Buffer.from(parts.join('').replace(/\s+/g, ''), 'hex');
const FILEID = '0c000000 2a000000'; // ino 12, generation 42
const UUID = '0123456789abcdef fedcba9876543210';

const fixtures: { name: string; fh: Buffer; fsid: KnfsdFsid }[] = [
  {
    name: 'FSID_DEV (0): htonl(major<<16|minor), root inode',
    fh: hex('01 00 00 01', '0008 0011', '02000000', FILEID), // dev 8:17, root ino 2
    fsid: { type: 0, major: 8, minor: 17, ino: 2 },
  },
  {
    name: 'FSID_NUM (1): exports(5) fsid=, host order',
    fh: hex('01 00 01 01', '07000000', FILEID), // fsid=7
    fsid: { type: 1, fsid: 7 },
  },
  {
    name: 'FSID_MAJOR_MINOR (2): htonl(major), htonl(minor), root inode',
    fh: hex('01 00 02 01', '00000103', '00000005', '80000000', FILEID), // dev 259:5, ino 128
    fsid: { type: 2, major: 259, minor: 5, ino: 128 },
  },
  {
    name: 'FSID_ENCODE_DEV (3): new_encode_dev(dev), root inode',
    // new_encode_dev(259:300) = (300 & 0xff) | 259 << 8 | (300 & ~0xff) << 12 = 0x0011_032c
    fh: hex('01 00 03 01', '2c031100', '02000000', FILEID),
    fsid: { type: 3, major: 259, minor: 300, ino: 2 },
  },
  {
    name: 'FSID_UUID4_INUM (4): root inode, uuid words xor-ed',
    // 01234567 ^ 89abcdef ^ fedcba98 ^ 76543210 = 00000000
    fh: hex('01 00 04 01', '02000000', '00000000', FILEID),
    fsid: { type: 4, ino: 2, uuid4: '00000000' },
  },
  {
    name: 'FSID_UUID8 (5): uuid words 0^2, 1^3',
    // 01234567 ^ fedcba98 = ffffffff ; 89abcdef ^ 76543210 = ffffffff
    fh: hex('01 00 05 01', 'ffffffff ffffffff', FILEID),
    fsid: { type: 5, uuid8: 'ffffffffffffffff' },
  },
  {
    name: 'FSID_UUID16 (6): the uuid as is',
    fh: hex('01 00 06 01', UUID, FILEID),
    fsid: { type: 6, uuid: UUID.replace(' ', '') },
  },
  {
    name: 'FSID_UUID16_INUM (7): 8-byte root inode, the uuid',
    fh: hex('01 00 07 01', '0200000000000000', UUID, FILEID),
    fsid: { type: 7, ino: 2n, uuid: UUID.replace(' ', '') },
  },
];

describe('exports: knfsd file handles', () => {
  for (const f of fixtures) {
    it(`parses ${f.name}`, () => {
      const h = parseKnfsdHandle(f.fh);
      assert.deepEqual(h.fsid, f.fsid);
      assert.equal(h.fileidType, 1);
      assert.equal(h.fileid.toString('hex'), FILEID.replace(' ', ''));
    });
    it(`refuses ${f.name} cut short with a typed error`, () => {
      for (let n = 0; n < f.fh.length - 8; n++) {
        assert.throws(() => parseKnfsdHandle(f.fh.subarray(0, n)), (e: unknown) => e instanceof FileHandleError && e.code === 'truncated');
      }
    });
  }

  it('knfsdHandle writes the FSID_NUM handle parseKnfsdHandle reads back, in either byte order', () => {
    const kernel = { type: 1, handle: hex(FILEID) };
    assert.deepEqual(knfsdHandle(7, kernel), hex('01 00 01 01', '07000000', FILEID));
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 1, max: 0xfe }), fc.uint8Array({ minLength: 1, maxLength: 128 }), fc.constantFrom('little' as const, 'big' as const), (fsid, type, bytes, order) => {
      const h = parseKnfsdHandle(knfsdHandle(fsid, { type, handle: Buffer.from(bytes) }, order), order);
      assert.deepEqual([h.fsid, h.fileidType, h.fileid.toString('hex')], [{ type: 1, fsid }, type, Buffer.from(bytes).toString('hex')]);
    }));
  });

  it('reads host-order words big-endian when told', () => {
    const h = parseKnfsdHandle(hex('01 00 01 01', '00000007'), 'big');
    assert.deepEqual(h.fsid, { type: 1, fsid: 7 });
  });

  it('refuses other formats and unknown fsid types with typed errors', () => {
    const err = (fh: Buffer) => {
      try {
        parseKnfsdHandle(fh);
      } catch (e) {
        assert.ok(e instanceof FileHandleError);
        return e.code;
      }
      return 'parsed';
    };
    assert.equal(err(hex('00 00 01 01 07000000')), 'not-knfsd'); // version 0 (old style)
    assert.equal(err(hex('01 05 01 01 07000000')), 'not-knfsd'); // auth type must be 0
    assert.equal(err(hex('01 00 08 01 07000000 00000000')), 'unknown-fsid-type');
    assert.equal(err(hex('01 00 ff 01')), 'unknown-fsid-type');
  });

  it('random bytes give a handle or a typed error, nothing else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        try {
          parseKnfsdHandle(Buffer.from(bytes));
        } catch (e) {
          assert.ok(e instanceof FileHandleError);
        }
      }),
    );
  });

  it('folds a uuid the way knfsd does', () => {
    assert.deepEqual(foldUuid(uuidBytes('01234567-89ab-cdef-fedc-ba9876543210')), { uuid8: 'ffffffffffffffff', uuid4: '00000000' });
  });
});

describe('exports: the exports table', () => {
  const table = new ExportsTable(
    [
      { path: '/srv/num', fsid: 7, clients: ['10.1.0.0/16'], secure: false },
      { path: '/srv/uuid', uuid: '01234567-89ab-cdef-fedc-ba9876543210', clients: [], secure: true },
      { path: '/srv/dev', dev: '8:17', clients: ['192.0.2.5', 'fd00::/8'], secure: false },
      { path: '/srv/other', fhPrefix: ['cafe'], clients: [], secure: false },
    ],
    { byteOrder: 'little', unknownHandles: 'deny' },
  );

  it('maps every knfsd fsid type and configured prefixes to their export', () => {
    const want = ['/srv/dev', '/srv/num', undefined, undefined, '/srv/uuid', '/srv/uuid', '/srv/uuid', '/srv/uuid'];
    fixtures.forEach((f, i) => assert.equal(table.exportOf(f.fh), want[i], f.name));
    assert.equal(table.exportOf(hex('cafe 0102')), '/srv/other');
    assert.equal(table.exportOf(hex('beef')), undefined);
    assert.equal(table.byFsid(7), '/srv/num');
  });

  it('refuses clients outside the networks, insecure ports on secure exports, unknown handles when told', () => {
    const num = fixtures[1]!.fh;
    assert.deepEqual(table.check(num, { address: '10.1.2.3', port: 40000 }), { allowed: true, exportId: '/srv/num' });
    assert.deepEqual(table.check(num, { address: '::ffff:10.1.2.3', port: 40000 }), { allowed: true, exportId: '/srv/num' });
    assert.equal(table.check(num, { address: '10.2.0.1', port: 700 }).allowed, false);
    const uuid = fixtures[6]!.fh;
    assert.deepEqual(table.check(uuid, { address: '10.9.9.9', port: 40000 }), { allowed: false, exportId: '/srv/uuid', reason: 'insecure-port' });
    assert.equal(table.check(uuid, { address: '10.9.9.9', port: 800 }).allowed, true);
    assert.equal(table.check(fixtures[0]!.fh, { address: 'fd00::1', port: 1 }).allowed, true);
    assert.deepEqual(table.check(hex('beef'), { address: '10.1.2.3', port: 1 }), { allowed: false, exportId: undefined, reason: 'unknown-handle' });
  });

  it('allows everything with no exports configured', () => {
    assert.equal(new ExportsTable([]).check(hex('beef'), { address: '1.2.3.4', port: 5000 }).allowed, true);
  });

  it('refuses two exports with one handle key', () => {
    assert.throws(() => new ExportsTable([{ path: '/a', fsid: 1, clients: [], secure: false }, { path: '/b', fsid: 1, clients: [], secure: false }]), /share the handle key/);
  });
});
