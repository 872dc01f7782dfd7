// `exportsFrom: ganesha`: lockdropd serves the EXPORT blocks of Ganesha's configuration and follows
// the file: an export removed from it (the configuration rewritten, as before Ganesha's reload) has
// its locks dropped and its filesystem unmounts at once; one added is served.
import assert from 'node:assert/strict';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nameToHandle } from '../../src/addon/files';
import type { ExportView, LockView } from '../../src/control';
import { NlmClient } from '../../src/nlm';
import { sh } from '../support/netns';
import { encodeGaneshaHandle } from '../support/ganesha-handle';
import { daemonSuite, listing, spawnDaemon } from '../daemon/harness';
import { makeFile, mountExt4 } from '../files/support';

const exportBlock = (id: number, path: string) => `EXPORT {\n\tExport_Id = ${id};\n\tPath = "${path}";\n\tPseudo = "${path}";\n\tProtocols = 3, 4;\n\tAccess_Type = RW;\n\tSquash = None;\n\tFSAL { Name = VFS; }\n}\n`;

describe('exports: following Ganesha (EXPORT blocks) end to end', function () {
  this.timeout(60_000);
  const cleanups = daemonSuite();

  it('serves its EXPORT blocks; an export taken out of the file drops its locks and frees its filesystem', async () => {
    const a = mountExt4();
    let mounted = true;
    cleanups.push(() => mounted && a.dispose());
    const b = mountExt4();
    cleanups.push(() => b.dispose());
    const dir = join(a.dir, '..');
    const conf = join(dir, 'ganesha.conf');
    const write = (text: string) => {
      writeFileSync(`${conf}.new`, text);
      renameSync(`${conf}.new`, conf);
    };
    write(`NFS_CORE_PARAM { Enable_NLM = false; }\n${exportBlock(1, a.dir)}`);
    const d = spawnDaemon([], { config: { exportsFrom: { server: 'ganesha', file: conf, pollSeconds: 0.3 } } });
    cleanups.push(() => d.cleanup());
    const port = (await d.started()).nlmPort as number;
    const c = await NlmClient.create({ server: { address: '127.0.0.1', port }, transport: 'udp', vers: 4, callerName: 'ganesha-follow' });
    cleanups.push(() => c.close());
    assert.deepEqual(listing<ExportView>(d.ctl(['exports', '--json']).stdout).map((e) => [e.path, e.from, e.ganeshaExportId]), [[a.dir, 'ganesha', 1]]);

    const fh = (id: number, path: string) => {
      const k = nameToHandle(path);
      return encodeGaneshaHandle({ exportId: id, big: false, fsidType: 0, fsid: Buffer.alloc(0), width: 4, type: k.type, kernel: k.handle });
    };
    const fa = fh(1, makeFile(a.dir, 'x'));
    const fb = fh(2, makeFile(b.dir, 'y'));
    assert.equal((await c.lock({ fh: fa, svid: 1, exclusive: true })).status, 'granted');
    assert.equal((await c.lock({ fh: fb, svid: 1, exclusive: true })).status, 'stale_fh', 'Export_Id 2 is not in the file yet');

    write(`NFS_CORE_PARAM { Enable_NLM = false; }\n${exportBlock(2, b.dir)}`);
    await d.waitLog((l) => /exports from ganesha .*added .*removed/.test(l.msg));
    assert.deepEqual(listing<LockView>(d.ctl(['locks', '--json']).stdout), []);
    sh('umount', [a.dir]); // nothing of it open any more
    mounted = false;
    assert.equal((await c.lock({ fh: fb, svid: 1, exclusive: true })).status, 'granted');
    assert.equal(listing<LockView>(d.ctl(['locks', '--json']).stdout)[0]!.export, b.dir);
    // A syntax error keeps what was served, and says where.
    write(`EXPORT { Export_Id = 3; Path = /x;\n`);
    await d.waitLog((l) => /ganesha\.conf:1: a block is not closed.*keeping the exports read before/.test(l.msg));
    assert.deepEqual(listing<ExportView>(d.ctl(['exports', '--json']).stdout).map((e) => e.path), [b.dir]);
    assert.equal((await c.unlock({ fh: fb, svid: 1 })).status, 'granted');
    // A path this node does not have yet (mounted where the service runs): served once it is here.
    const later = join(dir, 'later');
    write(`${exportBlock(2, b.dir)}${exportBlock(4, later)}`);
    await d.waitLog((l) => /export 4 .*not on this node/.test(l.msg));
    sh('mkdir', [later]);
    await d.waitLog((l) => /exports from ganesha .*added .*later/.test(l.msg));
    assert.deepEqual(listing<ExportView>(d.ctl(['exports', '--json']).stdout).map((e) => e.path), [b.dir, later]);
  });
});
