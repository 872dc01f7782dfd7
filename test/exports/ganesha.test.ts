// The Ganesha handle decoder on a real NFS-Ganesha 4.3's handles: Ganesha (NFSv3 + MOUNT,
// Enable_NLM = false) exports a tmpfs and an ext4 image from a node of its own; MOUNT3 MNT and
// NFSv3 LOOKUP through lockdrop's RpcClient give the handles; their Export_Id, fsid and embedded
// kernel handle must be what Ganesha was configured with and what name_to_handle_at gives.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ExportsTable, GANESHA_FSID_TWO_UINT32, GANESHA_FSID_TWO_UINT64, ganeshaHandleLength, parseGaneshaHandle, uuidBytes } from '../../src/exports';
import { RpcClient } from '../../src/rpc';
import { ganeshaUnavailable, nodeExec, startGanesha, startNfsNode, type Ganesha, type NfsNode } from '../support/ganesha';
import { nameToHandle, statfsFsid } from '../support/name-to-handle';
import { hasCommand, sh, skipBecause, startCapture, type Capture } from '../support/netns';
import { lookup, mount, unmount } from '../support/nfs3';

const EXT4_UUID = '6c0a1d5e-3b7f-4e21-9a8c-5d4e3f2a1b09';
const HOST = '10.213.7.1';
const NODE = '10.213.7.2';

interface Fs {
  name: 'tmpfs' | 'ext4';
  exportId: number;
  dir: string;
}

describe('exports: NFS-Ganesha 4.3 handles from a real server', function () {
  this.timeout(60_000);
  let base: string | undefined;
  const mounted: string[] = [];
  const filesystems: Fs[] = [];
  let node: NfsNode | undefined;
  let capture: Capture | undefined;

  before(async function () {
    const why = ganeshaUnavailable() ?? (hasCommand('mkfs.ext4') && hasCommand('losetup') ? undefined : 'mkfs.ext4 and losetup are not installed (e2fsprogs, mount)');
    if (why !== undefined) skipBecause(this, why);
    base = mkdtempSync(path.join(tmpdir(), 'lockdrop-ganesha-test-'));
    // Mounts first: the node's mount namespace is a private copy made when it starts.
    // TODO(lead): test/support/files.ts (w-native) has mountTmpfs/mountExt4 alike; one home once merged.
    const tmpfs = path.join(base, 'tmpfs');
    mkdirSync(tmpfs);
    sh('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'lockdrop-ganesha', tmpfs]);
    mounted.push(tmpfs);
    const ext4 = path.join(base, 'ext4');
    mkdirSync(ext4);
    sh('truncate', ['-s', '16M', path.join(base, 'ext4.img')]);
    sh('mkfs.ext4', ['-q', '-F', '-U', EXT4_UUID, path.join(base, 'ext4.img')]);
    sh('mount', ['-o', 'loop', path.join(base, 'ext4.img'), ext4]);
    mounted.push(ext4);
    for (const dir of [tmpfs, ext4]) {
      writeFileSync(path.join(dir, 'file'), 'locked by NLM\n');
      mkdirSync(path.join(dir, 'dir'));
      writeFileSync(path.join(dir, 'dir', 'nested'), 'deeper\n');
    }
    filesystems.push({ name: 'tmpfs', exportId: 77, dir: tmpfs }, { name: 'ext4', exportId: 4242, dir: ext4 });
    node = await startNfsNode({ hostAddress: HOST, address: NODE });
    if (hasCommand('dumpcap')) capture = await startCapture('any', path.join(base, 'nfs.pcapng'), `host ${NODE}`);
  });

  after(async () => {
    await capture?.stop();
    await node?.dispose();
    for (const dir of mounted.reverse()) sh('umount', [dir], { allowFail: true });
    if (base !== undefined && !process.env.KEEP_CAPTURE) rmSync(base, { recursive: true, force: true });
  });

  for (const name of ['tmpfs', 'ext4'] as const) {
    describe(`an FSAL_VFS export on ${name}`, () => {
      let fs: Fs;
      let ganesha: Ganesha | undefined;
      const clients: RpcClient[] = [];
      let root: Buffer;
      const client = (transport: 'udp' | 'tcp', port: number): RpcClient => {
        const c = new RpcClient({ transport, host: NODE, port, timeoutMs: 5_000 });
        clients.push(c);
        return c;
      };

      before(async () => {
        fs = filesystems.find((f) => f.name === name)!;
        ganesha = await startGanesha({ node: node!, exportPath: fs.dir, exportId: fs.exportId });
      });

      after(async () => {
        for (const c of clients) c.close();
        await ganesha?.stop();
      });

      it('MNT (UDP) gives the root handle: Ganesha format, the Export_Id, the export root\'s kernel handle', async () => {
        const reply = await mount(client('udp', ganesha!.mountPort.udp), fs.dir);
        root = reply.fh;
        assert.ok(reply.authFlavors.includes(1), `AUTH_SYS among ${reply.authFlavors.join(', ')}`);
        const h = parseGaneshaHandle(root);
        assert.equal(h.exportId, fs.exportId);
        assert.equal(h.byteOrder, 'little');
        assert.equal(root.length, ganeshaHandleLength(root[4]!));
        assert.ok(root.subarray(5 + root[4]!).every((b) => b === 0), 'padding is zero');
        assert.equal(h.dummy, false);
        const k = nameToHandle(fs.dir);
        assert.deepEqual({ type: h.kernel!.type, handle: h.kernel!.handle.toString('hex') }, { type: k.type, handle: k.handle.toString('hex') });
        assert.match(ganesha!.log(), /NFS Server skipping GRACE \(Graceless is true\)/);
        // NLM (100021) and RQUOTA (100011) are left to others: lockdropd serves NLM beside it.
        const rpcinfo = nodeExec(node!, 'rpcinfo', ['-p', '127.0.0.1']);
        assert.ok(!/^\s*1000(21|11)\s/m.test(rpcinfo), rpcinfo);
      });

      it('LOOKUP over UDP and TCP gives a file\'s handle whose kernel handle is name_to_handle_at\'s', async () => {
        const file = path.join(fs.dir, 'file');
        const k = nameToHandle(file);
        for (const [transport, port] of [['udp', ganesha!.nfsPort.udp], ['tcp', ganesha!.nfsPort.tcp]] as const) {
          const reply = await lookup(client(transport, port), root, 'file');
          const h = parseGaneshaHandle(reply.fh);
          assert.equal(h.exportId, fs.exportId, transport);
          assert.equal(h.kernel?.type, k.type, transport);
          assert.equal(h.kernel?.handle.toString('hex'), k.handle.toString('hex'), transport);
          assert.equal(reply.attributes?.type, 1, 'a regular file');
          assert.equal(reply.attributes?.fileid, BigInt(statSync(file).ino));
        }
      });

      it('LOOKUP through a subdirectory: the nested file\'s kernel handle too', async () => {
        const nfs = client('tcp', ganesha!.nfsPort.tcp);
        const dir = await lookup(nfs, root, 'dir');
        assert.equal(dir.attributes?.type, 2, 'a directory');
        const nested = await lookup(nfs, dir.fh, 'nested');
        for (const [fh, p] of [[dir.fh, 'dir'], [nested.fh, 'dir/nested']] as const) {
          const h = parseGaneshaHandle(fh);
          const k = nameToHandle(path.join(fs.dir, p));
          assert.equal(h.kernel?.type, k.type, p);
          assert.equal(h.kernel?.handle.toString('hex'), k.handle.toString('hex'), p);
        }
      });

      it('carries the filesystem\'s fsid: tmpfs statfs f_fsid, ext4 its uuid (blkid)', async () => {
        const h = parseGaneshaHandle((await lookup(client('udp', ganesha!.nfsPort.udp), root, 'file')).fh);
        if (name === 'tmpfs') {
          assert.equal(h.fsid.type, GANESHA_FSID_TWO_UINT32);
          assert.equal(h.fsid.bytes.toString('hex'), statfsFsid(fs.dir).toString('hex'));
        } else {
          assert.equal(h.fsid.type, GANESHA_FSID_TWO_UINT64);
          assert.equal(h.fsid.bytes.toString('hex'), uuidBytes(EXT4_UUID).toString('hex'));
        }
      });

      it('the exports table maps the handles by ganeshaExportId and names their kernel handles', async () => {
        const table = new ExportsTable([
          { path: fs.dir, ganeshaExportId: fs.exportId, clients: [], secure: false },
          { path: '/elsewhere', ganeshaExportId: fs.exportId + 1, clients: [], secure: false },
        ], { byteOrder: 'little', unknownHandles: 'deny' });
        const file = await lookup(client('udp', ganesha!.nfsPort.udp), root, 'file');
        for (const [fh, p] of [[root, fs.dir], [file.fh, path.join(fs.dir, 'file')]] as const) {
          assert.equal(table.exportOf(fh), fs.dir);
          const r = table.kernelHandle(fh);
          assert.ok('handle' in r, 'error' in r ? r.error : 'root');
          const k = nameToHandle(p);
          assert.equal(r.type, k.type);
          assert.ok(r.handle.equals(k.handle));
        }
        // The same bytes under another Export_Id belong to the other export.
        const moved = Buffer.from(file.fh);
        moved.writeUInt16BE(fs.exportId + 1, 2);
        assert.equal(table.exportOf(moved), '/elsewhere');
      });

      it('a stale name stays an NFS error, a corrupted handle a typed decoder error', async () => {
        await assert.rejects(lookup(client('udp', ganesha!.nfsPort.udp), root, 'missing'), /status 2\b/); // NFS3ERR_NOENT
        const bad = Buffer.from(root);
        bad[4] = bad[4]! + 4; // fs_len past the end of the handle
        assert.throws(() => parseGaneshaHandle(bad), { name: 'FileHandleError', message: /fs_len/ });
        // Ganesha refuses the same corruption: NFS3ERR_BADHANDLE (10001).
        await assert.rejects(lookup(client('udp', ganesha!.nfsPort.udp), bad, 'file'), /status 10001\b/);
      });

      it('handle bytes are not canonical: a padding byte taken into the kernel handle still names the file', async () => {
        // fs_len + 1 keeps the wire length (the padding absorbs it): Ganesha and the kernel accept
        // the longer kernel handle, so two byte strings name one file. Files must be told apart by
        // what they open to, not by handle bytes.
        assert.notEqual(root[4]! % 4, 3, 'the root handle has a padding byte (fs_len 22 on tmpfs, 26 on ext4)');
        const longer = Buffer.from(root);
        longer[4] = longer[4]! + 1;
        const h = parseGaneshaHandle(longer);
        assert.equal(h.kernel?.handle.toString('hex'), `${nameToHandle(fs.dir).handle.toString('hex')}00`);
        const viaLonger = await lookup(client('udp', ganesha!.nfsPort.udp), longer, 'file');
        assert.ok(viaLonger.fh.equals((await lookup(client('udp', ganesha!.nfsPort.udp), root, 'file')).fh));
      });

      it('UMNT, then SIGTERM: Ganesha exits 0 and leaves rpcbind', async () => {
        await unmount(client('udp', ganesha!.mountPort.udp), fs.dir);
        const { exitCode, signal } = await ganesha!.stop();
        assert.deepEqual({ exitCode, signal }, { exitCode: 0, signal: null });
        const rpcinfo = nodeExec(node!, 'rpcinfo', ['-p', '127.0.0.1']);
        assert.ok(!/\b10000[35]\b/.test(rpcinfo), rpcinfo);
      });
    });
  }

  describe('two nodes, one shared directory, one Export_Id', () => {
    it('give byte-identical handles, so a client keeps its handles when its server address moves', async () => {
      const shared = filesystems[0]!;
      const other = await startNfsNode({ hostAddress: '10.213.8.1', address: '10.213.8.2' });
      const servers: Ganesha[] = [];
      const clients: RpcClient[] = [];
      try {
        const handles: string[] = [];
        for (const n of [node!, other]) {
          const g = await startGanesha({ node: n, exportPath: shared.dir, exportId: 9 });
          servers.push(g);
          const c = (port: number) => {
            const x = new RpcClient({ transport: 'udp', host: n.address, port, timeoutMs: 5_000 });
            clients.push(x);
            return x;
          };
          const root = (await mount(c(g.mountPort.udp), shared.dir)).fh;
          handles.push((await lookup(c(g.nfsPort.udp), root, 'file')).fh.toString('hex'));
        }
        assert.equal(handles[0], handles[1]);
        assert.equal(parseGaneshaHandle(Buffer.from(handles[0]!, 'hex')).exportId, 9);
      } finally {
        for (const c of clients) c.close();
        for (const g of servers) await g.stop();
        await other.dispose();
      }
    });
  });

  describe('when Ganesha cannot start', () => {
    it('startGanesha says why and leaves no process behind', async () => {
      const before = sh('ip', ['netns', 'pids', node!.netns]).split(/\s+/).filter(Boolean).sort();
      // 192.0.2.99 is no address of the node: Ganesha cannot bind and exits.
      await assert.rejects(startGanesha({ node: node!, exportPath: filesystems[0]!.dir, bindAddress: '192.0.2.99', startTimeoutMs: 10_000 }), /ganesha.nfsd exited at start/);
      assert.deepEqual(sh('ip', ['netns', 'pids', node!.netns]).split(/\s+/).filter(Boolean).sort(), before);
    });
  });

  describe('the capture', () => {
    it('tshark dissects the MOUNT and NFS traffic without a malformed frame', async function () {
      if (!capture) skipBecause(this, 'dumpcap is not installed (tshark)');
      await capture.stop();
      const text = sh('tshark', ['-r', capture.file, '-V']);
      assert.ok(!/malformed/i.test(text), text.split('\n').filter((l) => /malformed/i.test(l)).slice(0, 5).join('\n'));
      for (const proc of ['MNT', 'UMNT']) assert.match(text, new RegExp(`Mount Service[\\s\\S]*Procedure: ${proc} \\(`), proc);
      assert.match(text, /Network File System, LOOKUP Call/);
      assert.match(text, /Network File System, LOOKUP Reply/);
    });
  });
});
