// The NFS-Ganesha FSAL_VFS handle decoder on annotated bytes (the layout of Ganesha 4.x:
// nfs_fh.h file_handle_v3_t, FSAL_VFS os/linux/handle_syscalls.c), fuzzed, and the exports table's
// Ganesha mapping and kernel handles (knfsd's too). test/exports/ganesha.test.ts checks the
// decoder on a real Ganesha's handles.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ExportsTable, FileHandleError, ganeshaHandleLength, parseGaneshaHandle, type FhErrorCode } from '../../src/exports';
import { encodeGaneshaHandle as encode } from '../support/ganesha-handle';

const hex = (...parts: string[]) => Buffer.from(parts.join('').replace(/\s+/g, ''), 'hex');

const KERNEL8 = '0c0000002a000000'; // ext4 FILEID_INO32_GEN: inode 12, generation 42
const UUID = '0123456789abcdef fedcba9876543210';

const golden = [
  {
    name: 'tmpfs-style: statfs f_fsid words, one-byte type 1, 8-byte kernel handle',
    fh: hex(
      '43', // fhversion GANESHA_FH_VERSION
      '00', // fhflags1: little-endian server
      '004d', // exportid 77, network order
      '12', // fs_len 18
      '44', // VFS flags: HANDLE_TYPE_8 | FSID_TWO_UINT32 (4)
      'a1b2c3d4 05000000', // fsid major 0xd4c3b2a1, minor 5 (host order)
      '01', // kernel handle_type 1
      KERNEL8, // f_handle
      '00', // padding: 5 + 18 = 23 → 24
    ),
    want: { exportId: 77, flags: 0, byteOrder: 'little', fsid: { type: 4, major: 0xd4c3b2a1n, minor: 5n, bytes: 'a1b2c3d405000000' }, kernel: { type: 1, handle: KERNEL8 } },
  },
  {
    name: 'ext4 with blkid: the uuid as FSID_TWO_UINT64',
    fh: hex(
      '43 00 0001', // version, flags, Export_Id 1
      '1a', // fs_len 26
      '43', // HANDLE_TYPE_8 | FSID_TWO_UINT64 (3)
      UUID, // 16 bytes: uuid_parse() into struct fsal_fsid__
      '01',
      KERNEL8,
      '00', // 31 → 32
    ),
    want: { exportId: 1, flags: 0, byteOrder: 'little', fsid: { type: 3, major: 0xefcdab8967452301n, minor: 0x1032547698badcfen, bytes: UUID.replace(' ', '') }, kernel: { type: 1, handle: KERNEL8 } },
  },
  {
    name: 'a two-byte handle type (> 255), FSID_DEVICE',
    fh: hex(
      '43 00 ffff', // Export_Id 65535
      '15', // fs_len 21
      '85', // HANDLE_TYPE_16 | FSID_DEVICE (5)
      '08000000 11000000', // device 8:17
      '3412', // int16 0x1234, host order
      '0102030405060708 090a', // 10-byte kernel handle
      '00 00', // 26 → 28
    ),
    want: { exportId: 65535, flags: 0, byteOrder: 'little', fsid: { type: 5, major: 8n, minor: 17n, bytes: '0800000011000000' }, kernel: { type: 0x1234, handle: '0102030405060708090a' } },
  },
  {
    name: 'a four-byte handle type, no fsid, a 12-byte kernel handle, no padding needed',
    fh: hex(
      '43 00 0007',
      '11', // fs_len 17: 5 + 17 = 22 → 24
      'c0', // HANDLE_TYPE_32 | FSID_NO_TYPE
      '00000100', // int32 65536
      '0102030405060708090a0b0c',
      '0000',
    ),
    want: { exportId: 7, flags: 0, byteOrder: 'little', fsid: { type: 0, major: 0n, minor: 0n, bytes: '' }, kernel: { type: 65536, handle: '0102030405060708090a0b0c' } },
  },
  {
    name: 'a big-endian server (FH_FSAL_BIG_ENDIAN): fsid and type words big-endian',
    fh: hex(
      '43', // version
      '40', // fhflags1 FH_FSAL_BIG_ENDIAN
      '0102', // Export_Id 258 (network order, whatever the server)
      '15', // fs_len 21
      '84', // HANDLE_TYPE_16 | FSID_TWO_UINT32
      'd4c3b2a1 00000005',
      '1234', // int16 0x1234 big-endian
      '0102030405060708 090a',
      '0000',
    ),
    want: { exportId: 258, flags: 0x40, byteOrder: 'big', fsid: { type: 4, major: 0xd4c3b2a1n, minor: 5n, bytes: 'd4c3b2a100000005' }, kernel: { type: 0x1234, handle: '0102030405060708090a' } },
  },
  {
    name: 'a dummy handle: a filesystem Ganesha has not claimed, no kernel handle',
    fh: hex(
      '43 00 004d',
      '09', // fs_len 9
      '24', // HANDLE_DUMMY | FSID_TWO_UINT32
      'a1b2c3d4 05000000',
      '00 00', // 14 → 16
    ),
    want: { exportId: 77, flags: 0, byteOrder: 'little', fsid: { type: 4, major: 0xd4c3b2a1n, minor: 5n, bytes: 'a1b2c3d405000000' }, dummy: true },
  },
];

const view = (h: ReturnType<typeof parseGaneshaHandle>) => ({
  exportId: h.exportId,
  flags: h.flags,
  byteOrder: h.byteOrder,
  fsid: { ...h.fsid, bytes: h.fsid.bytes.toString('hex') },
  ...(h.dummy ? { dummy: true } : { kernel: { type: h.kernel.type, handle: h.kernel.handle.toString('hex') } }),
});

/** Header (Export_Id 77) + the opaque + padding, for opaques that are malformed inside. */
const wire = (...opaque: string[]): Buffer => {
  const o = hex(...opaque);
  const fh = Buffer.alloc(ganeshaHandleLength(o.length));
  hex('43 00 004d').copy(fh);
  fh[4] = o.length;
  o.copy(fh, 5);
  return fh;
};

const code = (fh: Buffer): FhErrorCode | 'parsed' => {
  try {
    parseGaneshaHandle(fh);
    return 'parsed';
  } catch (e) {
    assert.ok(e instanceof FileHandleError, String(e));
    return e.code;
  }
};

const FSID_LEN = [0, 8, 8, 16, 8, 8];
const parts = fc
  .record({
    exportId: fc.integer({ min: 0, max: 0xffff }),
    big: fc.boolean(),
    fsidType: fc.integer({ min: 0, max: 5 }),
    width: fc.constantFrom(1 as const, 2 as const, 4 as const),
    type: fc.integer({ min: -0x8000_0000, max: 0x7fff_ffff }),
    kernelLen: fc.integer({ min: 8, max: 48 }),
    seed: fc.uint8Array({ minLength: 64, maxLength: 64 }),
  })
  .map(({ seed, kernelLen, ...p }) => {
    const type = p.width === 1 ? p.type & 0xff : p.width === 2 ? (p.type << 16) >> 16 : p.type;
    const fsid = Buffer.from(seed.subarray(0, FSID_LEN[p.fsidType]!));
    return { ...p, type, fsid, kernel: Buffer.from(seed.subarray(16, 16 + kernelLen)) };
  })
  // What fits the 59-byte opaque of a 64-byte NFSv3 handle.
  .filter((p) => 1 + p.fsid.length + p.width + p.kernel.length <= 59);

describe('exports: NFS-Ganesha FSAL_VFS handles', () => {
  for (const g of golden) {
    it(`parses ${g.name}`, () => {
      assert.deepEqual(view(parseGaneshaHandle(g.fh)), g.want);
    });
  }

  it('refuses other formats and malformed handles with typed errors', () => {
    const tmpfs = golden[0]!.fh;
    assert.equal(code(Buffer.alloc(0)), 'not-ganesha');
    assert.equal(code(hex('01 00 01 01 07000000')), 'not-ganesha'); // knfsd
    assert.equal(code(hex('42 00 004d 00')), 'not-ganesha'); // an older Ganesha handle version
    for (let n = 1; n < 5; n++) assert.equal(code(tmpfs.subarray(0, n)), 'truncated', `${n} bytes`);
    assert.equal(code(tmpfs.subarray(0, 20)), 'truncated'); // fs_len 18 says more than there is
    assert.equal(code(tmpfs.subarray(0, 23)), 'length-mismatch'); // the opaque is whole, the padding is missing
    assert.equal(code(Buffer.concat([tmpfs, hex('00000000')])), 'length-mismatch'); // longer than fs_len makes it
    assert.equal(code(Buffer.concat([tmpfs, Buffer.alloc(44)])), 'length-mismatch'); // over 64 bytes
    // Opaque parts wrapped in a well-formed header and padding:
    assert.equal(code(wire('')), 'truncated'); // fs_len 0: not even the flags byte
    assert.equal(code(wire('43 01020304')), 'truncated'); // FSID_TWO_UINT64 needs 16 bytes
    assert.equal(code(wire('46 0102030405060708 01', KERNEL8)), 'unknown-fsid-type'); // fsid type 6
    assert.equal(code(wire('5f 01', KERNEL8)), 'unknown-fsid-type'); // fsid type 31
    assert.equal(code(wire('04 a1b2c3d405000000 01', KERNEL8)), 'bad-handle-type'); // no width bits
    assert.equal(code(wire('c4 a1b2c3d405000000 0000')), 'truncated'); // the 4-byte type is cut off
    assert.equal(code(wire('44 a1b2c3d405000000 01 0c000000')), 'bad-kernel-handle'); // 4-byte kernel handle
    assert.equal(code(wire('40 01', '00'.repeat(49))), 'bad-kernel-handle'); // 49 bytes: more than FSAL_VFS's 48
    assert.equal(code(wire('40 01', '00'.repeat(48))), 'parsed');
    assert.equal(code(wire('24 a1b2c3d405000000 01')), 'length-mismatch'); // a dummy with bytes after its fsid
  });

  it('reads every handle Ganesha can build back into its parts', () => {
    fc.assert(
      fc.property(parts, (p) => {
        const h = parseGaneshaHandle(encode(p));
        assert.equal(h.dummy, false);
        assert.equal(h.exportId, p.exportId);
        assert.equal(h.byteOrder, p.big ? 'big' : 'little');
        assert.equal(h.fsid.type, p.fsidType);
        assert.ok(h.fsid.bytes.equals(p.fsid));
        assert.equal(h.kernel?.type, p.type);
        assert.ok(h.kernel?.handle.equals(p.kernel));
      }),
    );
  });

  it('random and mutated bytes give a handle or a typed error, nothing else', () => {
    const mustNotThrowOther = (fh: Buffer) => {
      try {
        parseGaneshaHandle(fh);
      } catch (e) {
        assert.ok(e instanceof FileHandleError, String(e));
      }
    };
    fc.assert(fc.property(fc.uint8Array({ maxLength: 80 }), (b) => mustNotThrowOther(Buffer.concat([hex('43'), Buffer.from(b)]))), { numRuns: 2000 });
    fc.assert(fc.property(fc.uint8Array({ maxLength: 80 }), (b) => mustNotThrowOther(Buffer.from(b))));
    fc.assert(
      fc.property(parts, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.nat({ max: 70 }), (p, at, byte, cut) => {
        const fh = encode(p);
        fh[at % fh.length] = byte;
        mustNotThrowOther(fh);
        mustNotThrowOther(fh.subarray(0, cut));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('exports: the exports table with Ganesha exports and kernel handles', () => {
  const table = new ExportsTable(
    [
      { path: '/srv/ganesha', ganeshaExportId: 77, clients: [], secure: false },
      { path: '/srv/knfsd', fsid: 7, clients: [], secure: false },
      { path: '/srv/other', fhPrefix: ['cafe'], clients: [], secure: false },
    ],
    { byteOrder: 'little', unknownHandles: 'deny' },
  );
  // knfsd FSID_NUM fsid=7, fileid type 1 (FILEID_INO32_GEN) with its 8 bytes:
  const knfsd = Buffer.concat([hex('01 00 01 01', '07000000'), hex(KERNEL8)]);

  it('maps a Ganesha handle to the export with its Export_Id, and no other', () => {
    assert.equal(table.exportOf(golden[0]!.fh), '/srv/ganesha');
    assert.equal(table.exportOf(golden[1]!.fh), undefined); // Export_Id 1
    assert.equal(table.exportOf(hex('43 00')), undefined);
    assert.deepEqual(table.check(golden[0]!.fh, { address: '10.0.0.1', port: 40000 }), { allowed: true, exportId: '/srv/ganesha' });
    assert.deepEqual(table.check(golden[1]!.fh, { address: '10.0.0.1', port: 40000 }), { allowed: false, exportId: undefined, reason: 'unknown-handle' });
    assert.equal(table.exportOf(knfsd), '/srv/knfsd');
  });

  it('names the kernel handle inside knfsd and Ganesha handles', () => {
    const g = table.kernelHandle(golden[0]!.fh);
    assert.ok('handle' in g, 'error' in g ? g.error : 'root');
    assert.equal(g.exportId, '/srv/ganesha');
    assert.equal(g.type, 1);
    assert.equal(g.handle.toString('hex'), KERNEL8);
    assert.equal(g.fsid?.type, 4);
    const k = table.kernelHandle(knfsd);
    assert.deepEqual(k, { exportId: '/srv/knfsd', type: 1, handle: hex(KERNEL8) });
  });

  it('says the export root for a knfsd FILEID_ROOT handle', () => {
    assert.deepEqual(table.kernelHandle(hex('01 00 01 00', '07000000')), { exportId: '/srv/knfsd', root: true });
  });

  it('says why there is no kernel handle: no export, no decoder, dummy, malformed', () => {
    const why = (fh: Buffer) => {
      const r = table.kernelHandle(fh);
      assert.ok('error' in r, `not an error: ${Object.keys(r).join(', ')}`);
      return r;
    };
    assert.equal(why(golden[1]!.fh).exportId, undefined); // Export_Id 1: no such export
    assert.match(why(hex('cafe 0102')).error, /no decoder/);
    assert.match(why(golden[5]!.fh).error, /dummy/);
    assert.match(why(golden[0]!.fh.subarray(0, 23)).error, /fs_len 18/);
    assert.equal(why(golden[0]!.fh.subarray(0, 23)).exportId, '/srv/ganesha');
    assert.match(why(hex('01 00 01 01', '07000000')).error, /file id of 0 bytes/);
    assert.match(why(Buffer.concat([hex('01 00 01 01', '07000000'), Buffer.alloc(132)])).error, /file id of 132 bytes/);
  });

  it('never throws, whatever the bytes', () => {
    fc.assert(
      fc.property(fc.constantFrom('', '43', '4300004d', '01000107', 'cafe'), fc.uint8Array({ maxLength: 80 }), (prefix, b) => {
        const r = table.kernelHandle(Buffer.concat([hex(prefix + (prefix === '01000107' ? '000000' : '')), Buffer.from(b)]));
        assert.ok('error' in r || 'handle' in r || 'root' in r);
      }),
      { numRuns: 2000 },
    );
  });

  it('refuses two exports with one Ganesha Export_Id', () => {
    assert.throws(() => new ExportsTable([{ path: '/a', ganeshaExportId: 1, clients: [], secure: false }, { path: '/b', ganeshaExportId: 1, clients: [], secure: false }]), /share the handle key ganesha:1/);
  });
});
