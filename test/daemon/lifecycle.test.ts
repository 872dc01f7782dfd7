// lockdropd as an operator runs it: start, reload, stop, a second instance, a bad config, a
// taken port, rpcbind registration. The real compiled daemon, in the test namespace.
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { NlmClient } from '../../src/nlm';
import { requireNamespaceRoot, sh, hasCommand, startRpcbind } from '../support/netns';

import { daemonDir, ensureBuilt, modeOf, spawnDaemon, type DaemonProcess } from './harness';

const FH = Buffer.from('0100010107000000' + '0c0000002a000000', 'hex'); // knfsd FSID_NUM fsid=7

describe('daemon: lifecycle of lockdropd', function () {
  this.timeout(60_000);
  const running: DaemonProcess[] = [];

  before(function () {
    requireNamespaceRoot(this);
    ensureBuilt();
  });
  afterEach(() => {
    for (const d of running.splice(0)) d.cleanup();
  });
  const start = (...a: Parameters<typeof spawnDaemon>): DaemonProcess => {
    const d = spawnDaemon(...a);
    running.push(d);
    return d;
  };

  it('starts, reloads on SIGHUP without dropping a lock, stops on SIGTERM with exit 0', async () => {
    const dir = daemonDir();
    const config = path.join(dir, 'lockdrop.yaml');
    writeFileSync(config, 'logLevel: info\n');
    const d = start(['--config', config], { dir });
    const started = await d.started();
    assert.ok((started.nlmPort as number) > 0 && (started.nsmPort as number) > 0);
    assert.equal(modeOf(path.dirname(d.control)), 0o700);
    assert.equal(modeOf(d.control), 0o600);

    const client = await NlmClient.create({ server: { address: '127.0.0.1', port: started.nlmPort as number }, transport: 'udp', vers: 4, callerName: 'client-a' });
    try {
      assert.equal((await client.lock({ fh: FH, svid: 1, exclusive: true })).status, 'granted');

      // A good new config: applied, lock untouched.
      writeFileSync(config, 'logLevel: debug\nholdDown: 250\nexports:\n  - path: /srv/seven\n    fsid: 7\n    secure: false\n    fileLocks: false\n');
      d.child.kill('SIGHUP');
      const reloaded = await d.waitLog((l) => l.msg.startsWith('configuration reloaded'));
      assert.deepEqual([...(reloaded.changed as string[])].sort(), ['exports', 'holdDown', 'logLevel']);
      assert.deepEqual(reloaded.needsRestart, []);
      await d.waitLog((l) => l.level === 20); // debug logging is on now
      const locks = d.ctl(['locks', '--json']);
      assert.equal(locks.code, 0, locks.stderr);
      assert.equal(locks.stdout.trim().split('\n').length, 1);

      // A bad new config: refused with the key named, the running one kept.
      writeFileSync(config, 'logLevel: chatty\n');
      d.child.kill('SIGHUP');
      const refused = await d.waitLog((l) => l.msg.startsWith('reload refused'));
      assert.match(JSON.stringify(refused.problems), /logLevel/);
      assert.equal(d.ctl(['status']).code, 0);
      assert.equal(d.ctl(['locks', '--json']).stdout.trim().split('\n').length, 1);
    } finally {
      await client.close();
    }

    assert.equal(await d.stop('SIGTERM'), 0);
    assert.ok(d.logs.some((l) => l.msg === 'stopped'));
    assert.ok(!existsSync(d.control), 'control socket removed');
    assert.deepEqual(readdirSync(path.join(dir, 'state')).filter((f) => f.startsWith('.lockdropd')), [], 'lock file removed');
  });

  it('runs with no config file at all and stops on SIGINT too', async () => {
    const d = start();
    await d.started();
    assert.equal(await d.stop('SIGINT'), 0);
  });

  it('a SIGTERM while starting stops it cleanly once started', async () => {
    const d = start();
    await d.waitLog((l) => /^source poll/.test(l.msg)); // composing: not started yet
    d.child.kill('SIGTERM');
    assert.equal(await d.exited, 0);
    assert.ok(d.logs.some((l) => l.msg === 'stopped'), d.stderr);
  });

  it('refuses a second instance on the same state directory', async () => {
    const dir = daemonDir();
    const first = start([], { dir });
    await first.started();
    const second = start(['--control', path.join(dir, 'run2', 'control.sock')], { dir });
    const code = await second.exited;
    assert.notEqual(code, 0);
    assert.match(second.stderr, /another lockdropd \(pid \d+\) is running/);
    assert.equal(first.ctl(['status']).code, 0, 'the first one is unharmed');
  });

  it('takes over a lock file left by a dead process', async () => {
    const dir = daemonDir();
    const d1 = start([], { dir });
    await d1.started();
    d1.child.kill('SIGKILL');
    await d1.exited;
    const d2 = start([], { dir });
    await d2.started();
    assert.equal(d2.ctl(['status']).code, 0);
  });

  it('exits non-zero on a bad config file with every bad key named', async () => {
    const d = start([], {
      config: 'grace: soon\nexports:\n  - path: relative/path\n    clients: ["10.0.0.0/33"]\nnotify: { timeout: -1 }\ncolour: blue\n',
    });
    const code = await d.exited;
    assert.equal(code, 78);
    for (const key of ['grace', 'exports.0.path', 'exports.0.clients.0', 'notify.timeout', 'colour: unknown key']) assert.ok(d.stderr.includes(key), `${key} in: ${d.stderr}`);
  });

  it('exits non-zero on a config file that is not YAML, and on bad flags', async () => {
    const d = start([], { config: 'grace: [1, 2\n' });
    assert.equal(await d.exited, 78);
    assert.match(d.stderr, /not valid YAML/);
    // A bad flag value is bad configuration too: 78, which the unit does not restart on.
    const f = start(['--nlm-port', 'lots']);
    assert.equal(await f.exited, 78);
    assert.match(f.stderr, /--nlm-port <port>' argument 'lots' is invalid. "lots" is not a non-negative integer/);
    // A usage error (unknown flag, missing value) is 64.
    const u = start(['--colour', 'blue']);
    assert.equal(await u.exited, 64);
    assert.match(u.stderr, /unknown option '--colour'/);
  });

  it('says so clearly when its port is taken', async () => {
    const taken = createSocket('udp4');
    await new Promise<void>((r) => taken.bind(0, '127.0.0.1', () => r()));
    try {
      const d = start(['--nlm-port', String(taken.address().port)]);
      assert.equal(await d.exited, 1);
      assert.match(d.stderr, new RegExp(`NLM port ${taken.address().port} is already in use`));
    } finally {
      taken.close();
    }
  });

  it('registers NLM and statd with rpcbind and unregisters on stop', async function () {
    if (!hasCommand('rpcbind') || !hasCommand('rpcinfo')) this.skip();
    const stopRpcbind = await startRpcbind();
    try {
      const d = start(['--rpcbind', 'auto']);
      const s = await d.started();
      const registered = sh('rpcinfo', ['-p', '127.0.0.1']);
      for (const vers of [1, 3, 4]) assert.match(registered, new RegExp(`100021\\s+${vers}\\s+udp\\s+${s.nlmPort}`));
      assert.match(registered, new RegExp(`100024\\s+1\\s+tcp\\s+${s.nsmPort}`));
      assert.equal(await d.stop(), 0);
      const after = sh('rpcinfo', ['-p', '127.0.0.1']);
      assert.doesNotMatch(after, /100021|100024/);
    } finally {
      await stopRpcbind();
    }
  });
});
