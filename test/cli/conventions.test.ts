// The command-line conventions operators and scripts rely on: --version on every command,
// global options before the subcommand, exit 64 for usage errors and 78 for bad values or a
// refused configuration, JSON errors under --json, `watch` summing a drop up in one line and
// failing when the daemon goes away, `lockdropctl reload` naming the bad keys.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { NlmClient } from '../../src/nlm';
import type { ReloadReport, StatusReport } from '../../src/control';
import { requireNamespaceRoot, testInterface } from '../support/netns';
import { LOCKDROPCTL, LOCKDROPD, REPO, daemonDir, ensureBuilt, spawnDaemon, spawnWatch, type DaemonProcess } from '../daemon/harness';

const LOCKDROP = path.join(REPO, 'bin', 'lockdrop');
const VERSION = (JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const run = (bin: string, args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 20_000 });
const fh = (ino: number) => Buffer.from(`0100010107000000${Buffer.from(Uint32Array.of(ino, 1).buffer).toString('hex')}`, 'hex');

describe('cli: command-line conventions', function () {
  this.timeout(60_000);

  before(function () {
    ensureBuilt();
  });

  it('every command has --version', () => {
    for (const name of ['lockdropd', 'lockdropctl', 'lockdrop']) {
      const r = run(path.join(REPO, 'bin', name), ['--version']);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, `${name} ${VERSION}\n`);
    }
  });

  it('usage errors exit 64, a bad value 78 for lockdropd; under --json the error is one JSON object on stderr', () => {
    const cases: [string, string[], number, RegExp][] = [
      [LOCKDROPCTL, ['status', '--bogus'], 64, /unknown option '--bogus'/],
      [LOCKDROPCTL, ['--bogus', 'status'], 64, /unknown option '--bogus'/],
      [LOCKDROPCTL, [], 64, /Usage: lockdropctl/],
      [LOCKDROPCTL, ['frobnicate'], 64, /unknown command 'frobnicate'/],
      [LOCKDROPCTL, ['notify'], 64, /required option '--ip <address>' not specified/],
      [LOCKDROPCTL, ['drop', '--ip'], 64, /option '--ip <address>' argument missing/],
      [LOCKDROPCTL, ['drop', '--ip', '10.0.0.1', '--client', 'x'], 64, /exactly one of/],
      [LOCKDROPCTL, ['locks', '--ip', 'not-an-ip'], 64, /"not-an-ip" is not an IP address/],
      [LOCKDROPD, ['--grace', 'soon'], 78, /"soon" is not a positive number/],
      [LOCKDROPD, ['--sources', 'telepathy'], 78, /unknown source telepathy/],
      [LOCKDROPD, ['--rpcbind', 'maybe'], 78, /Allowed choices are/],
      [LOCKDROPD, ['--no-such-flag'], 64, /unknown option '--no-such-flag'/],
      // A flag with no value before the next flag: missing (64), not a bad value (78).
      [LOCKDROPD, ['--grace', '--print-config'], 64, /'--grace <seconds>' argument '--print-config' is invalid\. it is missing/],
      [LOCKDROPD, ['--state-dir', '--grace', '5'], 64, /'--state-dir <dir>' argument '--grace' is invalid\. it is missing/],
      [LOCKDROPD, ['--grace'], 64, /argument missing/],
      [LOCKDROP, ['import-statd', '--ip', '10.0.0.1', '--from', '/nonexistent', '--state-dir', '/nonexistent-state'], 1, /nothing to import: \/nonexistent: no such directory/],
    ];
    for (const [bin, args, code, message] of cases) {
      const r = run(bin, args);
      assert.equal(r.status, code, `${path.basename(bin)} ${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      if (bin !== LOCKDROPCTL || args.length === 0) continue;
      const j = run(bin, ['--json', ...args]);
      assert.equal(j.status, code);
      assert.equal(j.stdout, '');
      const err = JSON.parse(j.stderr) as { error: string; exitCode: number };
      assert.equal(err.exitCode, code);
      assert.match(err.error, message);
    }
    // An error that is no usage error: 1, and JSON too.
    const down = run(LOCKDROPCTL, ['--json', '--control', '/nonexistent/control.sock', 'status']);
    assert.equal(down.status, 1);
    assert.deepEqual(JSON.parse(down.stderr), { error: 'cannot connect to /nonexistent/control.sock: is lockdropd running?', exitCode: 1 });
  });

  it('lockdropd as a user without the capabilities its configuration needs refuses to start, naming them', function () {
    requireNamespaceRoot(this);
    const dir = daemonDir();
    try {
      chmodSync(dir, 0o777);
      const exported = path.join(dir, 'export');
      mkdirSync(exported);
      writeFileSync(path.join(dir, 'lockdrop.json'), JSON.stringify({ nlmPort: 999, exports: [{ path: exported, fsid: 7, clients: ['0.0.0.0/0'], secure: false }] }));
      const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', process.execPath, LOCKDROPD, '--config', path.join(dir, 'lockdrop.json'), '--state-dir', path.join(dir, 'state'), '--control', path.join(dir, 'run', 'control.sock'), '--rpcbind', 'off', '--sources', 'poll'], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(r.status, 1, r.stdout + r.stderr);
      assert.match(r.stderr, /missing capabilities: CAP_DAC_READ_SEARCH \(to lock the files of \S*export with open_by_handle_at, or set fileLocks: false\), CAP_NET_BIND_SERVICE \(to bind port 999\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('lockdropd --address is repeatable and comma-separated, never swallowing what follows', () => {
    const r = run(LOCKDROPD, ['--address', '10.0.0.1', '--address', '10.0.1.0/24,10.0.2.1', '--state-dir', '/tmp/x', '--print-config']);
    assert.equal(r.status, 0, r.stderr);
    const c = JSON.parse(r.stdout) as { addresses: string[]; stateDir: string };
    assert.deepEqual(c.addresses, ['10.0.0.1', '10.0.1.0/24', '10.0.2.1']);
    assert.equal(c.stateDir, '/tmp/x');
  });

  describe('against a daemon', () => {
    let d: DaemonProcess;
    let nic: ReturnType<typeof testInterface> | undefined;
    const VIP = '10.81.0.1';
    const config = (extra: Record<string, unknown> = {}) => JSON.stringify({ addresses: [VIP], grace: 30, ...extra });

    before(async function () {
      requireNamespaceRoot(this);
      nic = testInterface([VIP]);
      const dir = daemonDir();
      d = spawnDaemon([], { dir, config: config() });
      await d.started();
    });
    after(() => {
      d?.cleanup();
      nic?.dispose();
    });

    it('drop --client of a client that holds nothing says nothing matched and exits 1', () => {
      const r = d.ctl(['drop', '--client', 'nobody']);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /no client matches "nobody": it holds no lock, share or queued request here/);
    });

    it('global options go before the subcommand as well as after it', () => {
      const before = spawnSync(process.execPath, [LOCKDROPCTL, '--json', '--control', d.control, 'status'], { encoding: 'utf8' });
      assert.equal(before.status, 0, before.stderr);
      assert.equal((JSON.parse(before.stdout) as StatusReport).pid, d.child.pid);
      const configOnly = spawnSync(process.execPath, [LOCKDROPCTL, '--config', path.join(d.dir, 'lockdrop.yaml'), '--control', d.control, 'status', '--json'], { encoding: 'utf8' });
      assert.equal(configOnly.status, 0, configOnly.stderr);
    });

    it('watch sums an address drop up in one line, however many locks it released, and exits 1 when the daemon goes away', async () => {
      const client = await NlmClient.create({ server: { address: VIP, port: (await d.started()).nlmPort as number }, transport: 'tcp', vers: 4, callerName: 'many' });
      const { events, stderr, exited } = spawnWatch(d.control);
      try {
        // Connected once a grant shows.
        for (let i = 1; i <= 100 && !events.some((e) => e.kind === 'grant'); i++) {
          assert.equal((await client.lock({ fh: fh(1000 + i), svid: 1, exclusive: true })).status, 'granted');
          await new Promise((r) => setTimeout(r, 50));
        }
        for (let i = 0; i < 20; i++) assert.equal((await client.lock({ fh: fh(i), svid: 2, exclusive: true })).status, 'granted');
        const drop = d.ctl(['drop', '--ip', VIP, '--json']);
        assert.equal(drop.code, 0, drop.stderr);
        assert.ok((JSON.parse(drop.stdout) as { locks: number }).locks >= 21);
        for (let i = 0; i < 100 && !events.some((e) => e.kind === 'drop'); i++) await new Promise((r) => setTimeout(r, 50));
        const drops = events.filter((e) => e.kind === 'drop');
        assert.equal(drops.length, 1, JSON.stringify(drops));
        assert.match(drops[0]!.message, /^10\.81\.0\.1: dropped \d+ locks of 1 client \(operator\)/);
        assert.equal(events.filter((e) => e.kind === 'release').length, 0, 'no line per released lock');
      } finally {
        await client.close();
      }
      // The daemon goes away under the watcher: that is a failure of watch.
      assert.equal(await d.stop(), 0);
      assert.equal(await exited, 1);
      assert.match(stderr(), /the daemon closed the watch stream/);
    });
  });

  describe('lockdropctl reload', () => {
    let d: DaemonProcess;
    before(async function () {
      requireNamespaceRoot(this);
      d = spawnDaemon([], { config: 'grace: 30\n' });
      await d.started();
    });
    after(() => d?.cleanup());

    it('applies a good file and says what changed; refuses a bad one naming every bad key, exit 78, the running configuration kept', () => {
      const file = path.join(d.dir, 'lockdrop.yaml');
      writeFileSync(file, 'grace: 45\nlogLevel: debug\nnlmPort: 4045\n');
      const ok = d.ctl(['reload', '--json']);
      assert.equal(ok.code, 0, ok.stderr);
      assert.deepEqual(JSON.parse(ok.stdout) as ReloadReport, { changed: ['nlmPort', 'grace', 'logLevel'], needsRestart: ['nlmPort'] });
      assert.match(d.ctl(['reload']).stdout, /configuration reloaded \(no change\); |configuration reloaded: nlmPort; nlmPort: at the next start/);

      writeFileSync(file, 'grace: soon\ncolour: blue\n');
      const bad = d.ctl(['reload']);
      assert.equal(bad.code, 78);
      assert.match(bad.stderr, /invalid configuration/);
      assert.match(bad.stderr, /grace: Expected number, received string/);
      assert.match(bad.stderr, /colour: unknown key/);
      const badJson = d.ctl(['reload', '--json']);
      assert.equal(badJson.code, 78);
      assert.deepEqual((JSON.parse(badJson.stderr) as { problems: string[] }).problems, ['grace: Expected number, received string', 'colour: unknown key']);
      const s = JSON.parse(d.ctl(['status', '--json']).stdout) as StatusReport;
      assert.equal(s.pid, d.child.pid, 'still running');
    });
  });
});
