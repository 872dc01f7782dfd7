import assert from 'node:assert/strict';
import { EtabError, ExportsTable, NO_CLIENT, clientSpec, foldUuid, knfsdExports, mountdUuid, parseEtab, uuidBytes, type ExportedFilesystem } from '../../src/exports';

// A real etab: Debian bookworm's exportfs (nfs-utils 2.6.2) wrote it from this /etc/exports, with
// no nfsd running (exportfs -ra only rewrites etab when /proc/fs/nfsd is not mounted):
//
//   /tmp/kx/img   10.0.0.0/24(rw,sync,no_subtree_check) 192.168.1.7(ro,insecure,insecure_locks,no_root_squash,no_subtree_check) *(ro,all_squash,anonuid=1000,anongid=1001,no_subtree_check)
//   /tmp/kx/t     -rw,fsid=7,no_subtree_check @ng(sec=krb5p:sys) localhost(rw,no_auth_nlm,mp) *.example.org(sec=krb5)
//   /tmp/kx/img/sub  10.0.0.0/255.0.0.0(rw,fsid=01234567-89ab-cdef-0123-456789abcdef,crossmnt,subtree_check)
//   "/tmp/kx/img/a b" [fd00::/64](rw,fsid=root,no_subtree_check) gss/krb5(rw,no_subtree_check)
//
// Each line: the path (\040 for the space), a tab, the client, then every option spelled out,
// then `sec=FLAVOURS` and the flags for those flavours again.
const ETAB = [
  // localhost: insecure_locks from no_auth_nlm, fsid=7 from the default options (-rw,fsid=7), mp as mountpoint
  '/tmp/kx/t\tlocalhost(rw,sync,wdelay,hide,nocrossmnt,secure,root_squash,no_all_squash,no_subtree_check,insecure_locks,acl,no_pnfs,fsid=7,mountpoint,anonuid=65534,anongid=65534,sec=sys,rw,root_squash,no_all_squash)',
  // one host, insecure port allowed, no squash, locks without access checks
  '/tmp/kx/img\t192.168.1.7(ro,sync,wdelay,hide,nocrossmnt,insecure,no_root_squash,no_all_squash,no_subtree_check,insecure_locks,acl,no_pnfs,anonuid=65534,anongid=65534,sec=sys,ro,no_root_squash,no_all_squash)',
  // a netmask client and fsid=<uuid>: knfsd puts this uuid in handles instead of the filesystem's
  '/tmp/kx/img/sub\t10.0.0.0/255.0.0.0(rw,sync,wdelay,hide,crossmnt,secure,root_squash,no_all_squash,subtree_check,secure_locks,acl,no_pnfs,fsid=01234567-89ab-cdef-0123-456789abcdef,anonuid=65534,anongid=65534,sec=sys,rw,root_squash,no_all_squash)',
  '/tmp/kx/img\t10.0.0.0/24(rw,sync,wdelay,hide,nocrossmnt,secure,root_squash,no_all_squash,no_subtree_check,secure_locks,acl,no_pnfs,anonuid=65534,anongid=65534,sec=sys,rw,root_squash,no_all_squash)',
  // the escaped space; an IPv6 network in brackets; fsid=root written as fsid=0
  '/tmp/kx/img/a\\040b\t[fd00::/64](rw,sync,wdelay,hide,nocrossmnt,secure,root_squash,no_all_squash,no_subtree_check,secure_locks,acl,no_pnfs,fsid=0,anonuid=65534,anongid=65534,sec=sys,rw,root_squash,no_all_squash)',
  // RPCSEC_GSS only: no NLM (AUTH_SYS) client is served through this line
  '/tmp/kx/t\t*.example.org(rw,sync,wdelay,hide,nocrossmnt,secure,root_squash,no_all_squash,no_subtree_check,secure_locks,acl,no_pnfs,fsid=7,anonuid=65534,anongid=65534,sec=krb5,rw,root_squash,no_all_squash)',
  // krb5p and sys: the flags after sec= apply to sys too
  '/tmp/kx/t\t@ng(rw,sync,wdelay,hide,nocrossmnt,secure,root_squash,no_all_squash,no_subtree_check,secure_locks,acl,no_pnfs,fsid=7,anonuid=65534,anongid=65534,sec=krb5p:sys,rw,root_squash,no_all_squash)',
  // every client, all squashed to 1000:1001
  '/tmp/kx/img\t*(ro,sync,wdelay,hide,nocrossmnt,secure,root_squash,all_squash,no_subtree_check,secure_locks,acl,no_pnfs,anonuid=1000,anongid=1001,sec=sys,ro,root_squash,all_squash)',
  // the old gss/ client form: exportfs still writes sec=sys for it
  '/tmp/kx/img/a\\040b\tgss/krb5(rw,sync,wdelay,hide,nocrossmnt,secure,root_squash,no_all_squash,no_subtree_check,secure_locks,acl,no_pnfs,anonuid=65534,anongid=65534,sec=sys,rw,root_squash,no_all_squash)',
  '',
].join('\n');

const FS_UUID = '893c9020-192f-48db-9a21-fce67d332315'; // blkid of the ext4 image mounted at /tmp/kx/img
const fsOf = (path: string): ExportedFilesystem | undefined =>
  ({
    '/tmp/kx/img': { dev: '7:0', ino: 2, fsRoot: true, uuid: mountdUuid({ fsType: 0xef53, blkidUuid: FS_UUID, blkidType: 'ext4' }) },
    '/tmp/kx/img/sub': { dev: '7:0', ino: 12, fsRoot: false, uuid: mountdUuid({ fsType: 0xef53, blkidUuid: FS_UUID }) },
    '/tmp/kx/img/a b': { dev: '7:0', ino: 13, fsRoot: false },
    '/tmp/kx/t': { dev: '0:52', ino: 1, fsRoot: true },
  })[path];

describe('exports: knfsd etab', () => {
  it('reads every line exportfs wrote, options and escapes as nfs-utils means them', () => {
    const lines = parseEtab(ETAB);
    assert.equal(lines.length, 9);
    const [local, host, sub, net24, v6, gssOnly, ng, world, oldGss] = lines;
    assert.deepEqual(local, { path: '/tmp/kx/t', client: 'localhost', readOnly: false, secure: true, rootSquash: true, allSquash: false, noAuthNlm: true, anonuid: 65534, anongid: 65534, fsid: 7, sys: true });
    assert.equal(host!.secure, false);
    assert.equal(host!.rootSquash, false);
    assert.equal(host!.noAuthNlm, true);
    assert.equal(host!.readOnly, true);
    assert.equal(sub!.uuid, '0123456789abcdef0123456789abcdef');
    assert.equal(sub!.fsid, undefined);
    assert.equal(net24!.client, '10.0.0.0/24');
    assert.equal(v6!.path, '/tmp/kx/img/a b');
    assert.equal(v6!.fsid, 0);
    assert.equal(gssOnly!.sys, false);
    assert.equal(ng!.sys, true);
    assert.deepEqual([world!.allSquash, world!.anonuid, world!.anongid], [true, 1000, 1001]);
    assert.equal(oldGss!.sys, true);
  });

  it('turns it into one export per path, identified as knfsd names it in handles', () => {
    const resolved = new Map([['localhost', ['127.0.0.1', '::1']]]);
    const { entries, notes } = knfsdExports(parseEtab(ETAB), fsOf, resolved);
    const by = new Map(entries.map((e) => [e.path, e]));
    assert.deepEqual([...by.keys()].sort(), ['/tmp/kx/img', '/tmp/kx/img/a b', '/tmp/kx/img/sub', '/tmp/kx/t']);
    const img = by.get('/tmp/kx/img')!;
    // No fsid=: the filesystem's own uuid (blkid's), the device and the root's inode.
    assert.deepEqual({ uuid: img.uuid, dev: img.dev, rootIno: img.rootIno, fsRoot: img.fsRoot }, { uuid: '893c9020192f48db9a21fce67d332315', dev: '7:0', rootIno: 2, fsRoot: true });
    // `*` among its clients: every client; one line insecure: a client allowed by it may come from any port.
    assert.deepEqual(img.clients, []);
    assert.equal(img.secure, false);
    assert.equal(img.noAuthNlm, true);
    assert.ok(notes.some((n) => n.startsWith('/tmp/kx/img: secure differs')));
    const sub = by.get('/tmp/kx/img/sub')!;
    assert.equal(sub.uuid, '0123456789abcdef0123456789abcdef');
    assert.equal(sub.fsRoot, false);
    assert.deepEqual(sub.clients, ['10.0.0.0/8']);
    const t = by.get('/tmp/kx/t')!;
    assert.equal(t.fsid, 7);
    assert.equal(t.uuid, undefined);
    // The netgroup cannot be matched by address: every client (noted); the krb5-only line adds nothing.
    assert.deepEqual(t.clients, []);
    assert.ok(notes.some((n) => n.includes('netgroup @ng')));
    assert.equal(by.get('/tmp/kx/img/a b')!.fsid, 0);
  });

  it('leaves out what no NLM client can use, and a path the node does not have', () => {
    const gss = '/g\t*.example.org(rw,fsid=3,sec=krb5,rw)\n/gone\t*(rw,fsid=4,sec=sys,rw)\n';
    const { entries, notes } = knfsdExports(parseEtab(gss), () => undefined);
    assert.deepEqual(entries, []);
    assert.ok(notes.some((n) => n.startsWith('/g: exported with RPCSEC_GSS only')));
    assert.ok(notes.some((n) => n.startsWith('/gone: in etab but not on this node')));
  });

  it('a second path with the same fsid= is left out, noted', () => {
    const { entries, notes } = knfsdExports(parseEtab('/a\t*(rw,fsid=5,sec=sys,rw)\n/b\t*(rw,fsid=5,sec=sys,rw)\n'), () => ({ dev: '8:1', ino: 2, fsRoot: true }));
    assert.deepEqual(entries.map((e) => e.path), ['/a']);
    assert.match(notes[0]!, /^\/b: fsid=5 is \/a's too/);
  });

  it('a host name that does not resolve allows nobody rather than everybody', () => {
    const { entries } = knfsdExports(parseEtab('/x\tnowhere.invalid(rw,fsid=9,sec=sys,rw)\n'), () => ({ dev: '8:1', ino: 2, fsRoot: true }));
    assert.deepEqual(entries[0]!.clients, [NO_CLIENT]);
    const table = new ExportsTable(entries);
    assert.equal(table.check(Buffer.from('0100010109000000', 'hex'), { address: '10.0.0.1', port: 700 }).allowed, false);
  });

  it('refuses text that is not etab, naming the line', () => {
    assert.throws(() => parseEtab('/ok\t*(rw)\nnot an etab line\n'), (e: unknown) => e instanceof EtabError && e.line === 2);
    assert.throws(() => parseEtab('relative\t*(rw)\n'), EtabError);
    assert.throws(() => parseEtab('/x\t*(rw,anonuid=abc)\n'), /anonuid=abc/);
    assert.throws(() => parseEtab('/x\t*(rw,fsid=notanumber)\n'), /fsid=notanumber/);
    assert.deepEqual(parseEtab('# comment\n\n'), []);
  });

  it('client specs: networks, netmasks, brackets, names, and what cannot be matched', () => {
    assert.deepEqual(clientSpec('*'), { kind: 'every' });
    assert.deepEqual(clientSpec('10.1.2.3'), { kind: 'networks', networks: ['10.1.2.3'] });
    assert.deepEqual(clientSpec('10.0.0.0/255.255.0.0'), { kind: 'networks', networks: ['10.0.0.0/16'] });
    assert.deepEqual(clientSpec('[fd00::/64]'), { kind: 'networks', networks: ['fd00::/64'] });
    assert.deepEqual(clientSpec('nfs1.example.com'), { kind: 'name', name: 'nfs1.example.com' });
    assert.equal(clientSpec('10.0.0.0/255.0.255.0').kind, 'name');
    for (const c of ['@ng', '*.example.org', 'host?', 'gss/krb5']) assert.equal(clientSpec(c).kind, 'unmatchable', c);
  });

  it("mountd's uuid: blkid's unless the filesystem is one mountd asks statfs for, then f_fsid", () => {
    assert.equal(mountdUuid({ fsType: 0xef53, blkidUuid: FS_UUID }), '893c9020192f48db9a21fce67d332315');
    // btrfs (by magic or by blkid's TYPE): statfs's f_fsid as %08x%08x, folded into 16 bytes.
    assert.equal(mountdUuid({ fsType: 0x9123683e, blkidUuid: FS_UUID, fsid: [0x11223344, 0x55667788] }), '11223344556677880000000000000000');
    assert.equal(mountdUuid({ fsType: 0xef53, blkidUuid: FS_UUID, blkidType: 'btrfs', fsid: [1, 2] }), '00000001000000020000000000000000');
    // vfat's short uuid: its 4 bytes, the rest zero.
    assert.equal(mountdUuid({ fsType: 0x4d44, blkidUuid: '1234-ABCD' }), '1234abcd000000000000000000000000');
    assert.equal(mountdUuid({ fsType: 0x1021994, fsid: [0, 0] }), undefined);
  });

  it('handles of two directories of one filesystem find their own export (uuid16 with the inode)', () => {
    const u = '893c9020192f48db9a21fce67d332315';
    const table = new ExportsTable([
      { path: '/srv', uuid: u, dev: '7:0', rootIno: 2, fsRoot: true, clients: [], secure: true },
      { path: '/srv/a', uuid: u, dev: '7:0', rootIno: 12, fsRoot: false, clients: [], secure: true },
      { path: '/srv/b', uuid: u, dev: '7:0', rootIno: 13, fsRoot: false, clients: [], secure: true },
    ]);
    const ino = (n: number) => Buffer.from([n, 0, 0, 0, 0, 0, 0, 0]);
    const fh = (type: number, fsid: Buffer) => Buffer.concat([Buffer.from([1, 0, type, 1]), fsid, Buffer.from('0c0000002a000000', 'hex')]);
    assert.equal(table.exportOf(fh(6, uuidBytes(u))), '/srv'); // FSID_UUID16: the filesystem's root
    assert.equal(table.exportOf(fh(7, Buffer.concat([ino(12), uuidBytes(u)]))), '/srv/a'); // FSID_UUID16_INUM
    assert.equal(table.exportOf(fh(7, Buffer.concat([ino(13), uuidBytes(u)]))), '/srv/b');
    assert.equal(table.exportOf(fh(8 - 3, Buffer.from(foldUuid(uuidBytes(u)).uuid8, 'hex'))), '/srv'); // FSID_UUID8
    assert.equal(table.exportOf(fh(4, Buffer.concat([ino(13).subarray(0, 4), Buffer.from(foldUuid(uuidBytes(u)).uuid4, 'hex')]))), '/srv/b'); // FSID_UUID4_INUM
    // FSID_ENCODE_DEV 7:0 (new_encode_dev: minor | major << 8), root inode 12
    assert.equal(table.exportOf(fh(3, Buffer.from([0, 7, 0, 0, 12, 0, 0, 0]))), '/srv/a');
  });

  it('an explicit entry with uuid and rootIno keeps matching uuid16 handles without the inode while alone', () => {
    const u = '0123456789abcdef0123456789abcdef';
    const t = new ExportsTable([{ path: '/e', uuid: u, rootIno: 5, clients: [], secure: true }]);
    assert.equal(t.exportOf(Buffer.concat([Buffer.from([1, 0, 6, 1]), uuidBytes(u)])), '/e');
  });
});
