// Locks need access to the file, as the caller (issue 21.3): a lock request is checked as its
// AUTH_SYS identity with the export's squash options (root_squash by default), as Linux's lockd
// opens the file with the caller's credentials; the file's owner always may, and noAuthNlm
// (exports(5) insecure_locks / no_auth_nlm) turns the check off.
import assert from 'node:assert/strict';
import { chmodSync, chownSync } from 'node:fs';
import { NlmClient } from '../../src/nlm';
import { AUTH_SYS, type Credential } from '../../src/rpc';
import { daemonSuite, spawnDaemon } from '../daemon/harness';
import { knfsdHandle, makeFile, mountTmpfs } from './support';

const as = (uid: number, gid = uid, gids: number[] = []): Credential => ({ flavor: AUTH_SYS, stamp: 0, machineName: 'access-client', uid, gid, gids });

describe('files: a lock needs access to the file, checked as the caller', function () {
  this.timeout(60_000);
  const cleanups = daemonSuite();

  it('refuses a caller that may neither read nor write the file (root squashed), grants the owner, and noAuthNlm checks nothing', async () => {
    const a = mountTmpfs();
    const b = mountTmpfs();
    cleanups.push(() => a.dispose(), () => b.dispose());
    const d = spawnDaemon([], { config: { exports: [{ path: a.dir, fsid: 41, secure: false }, { path: b.dir, fsid: 42, secure: false, noAuthNlm: true }] } });
    // Waited for: a killed daemon's files close only once it exited (the tmpfs is unmounted next).
    cleanups.push(async () => (await d.stop('SIGKILL'), d.cleanup()));
    const port = (await d.started()).nlmPort as number;
    const c = await NlmClient.create({ server: { address: '127.0.0.1', port }, transport: 'tcp', vers: 4, callerName: 'access-client' });
    cleanups.push(() => c.close());
    const file = (dir: string, fsid: number, name: string, mode: number, owner = 0, group = 0) => {
      const path = makeFile(dir, name);
      chownSync(path, owner, group);
      chmodSync(path, mode);
      return knfsdHandle(path, fsid);
    };
    const secret = file(a.dir, 41, 'secret', 0o600);
    const status = async (fh: Buffer, cred: Credential, exclusive = true) => (await c.lock({ fh, svid: 1, exclusive }, cred)).status;

    assert.equal(await status(secret, as(65534)), 'failed', 'nobody on a root-owned 0600 file');
    assert.equal(await status(secret, as(65534), false), 'failed');
    assert.equal(await status(secret, as(0)), 'failed', 'root is squashed to nobody');
    assert.equal(await status(secret, as(1000, 1000, [0])), 'failed', 'group 0 is squashed too');
    assert.equal((await c.test({ fh: secret, svid: 1, exclusive: true })).status, 'failed', 'TEST is checked too (the client sends uid 0)');
    const shared = file(a.dir, 41, 'shared', 0o640, 0, 3000);
    assert.equal(await status(shared, as(1000, 1000, [3000]), false), 'granted', 'a member of the file\'s group may read it');
    assert.equal(await status(shared, as(1001), false), 'failed', 'others may not');
    const mine = file(a.dir, 41, 'mine', 0o000, 1000, 1000);
    assert.equal(await status(mine, as(1000)), 'granted', "the file's owner always may (as knfsd's owner override)");
    // By lock mode, as Linux's lockd opens the file (lock_to_openmode): read access for a shared
    // lock, write access for an exclusive one.
    const readable = file(a.dir, 41, 'readable', 0o644);
    assert.equal(await status(readable, as(65534), false), 'granted', 'a shared lock on a file others may read');
    assert.equal(await status(readable, as(65534)), 'failed', 'not an exclusive one: others may not write it');
    assert.equal((await c.test({ fh: readable, svid: 1, exclusive: false })).status, 'granted', 'TEST by mode too');
    assert.equal((await c.test({ fh: readable, svid: 1, exclusive: true })).status, 'failed');
    const writable = file(a.dir, 41, 'writable', 0o602);
    assert.equal(await status(writable, as(65534)), 'granted', 'an exclusive lock on a file others may write');
    assert.equal(await status(writable, as(65534), false), 'failed', 'not a shared one: others may not read it');
    const group = file(a.dir, 41, 'group', 0o640, 0, 3000);
    assert.equal(await status(group, as(1000, 1000, [3000])), 'failed', "the group's read bit is no write access");
    assert.equal(await status(group, as(1000, 1000, [3000]), false), 'granted');
    assert.equal((await c.share({ fh: readable, mode: 0, access: 1 })).status, 'granted', 'SHARE needs read access (lockd opens it for reading; root squashed)');
    assert.equal((await c.share({ fh: secret, mode: 0, access: 1 })).status, 'failed');
    const unchecked = file(b.dir, 42, 'secret', 0o600);
    assert.equal(await status(unchecked, as(65534)), 'granted', 'noAuthNlm: no access check');
    assert.equal(await status(file(b.dir, 42, 'readable', 0o644), as(65534)), 'granted', 'noAuthNlm: nor for writing');
  });
});
