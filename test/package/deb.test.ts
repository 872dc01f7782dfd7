// The Debian package as an operator meets it: `npm run package` builds it, dpkg installs it on
// this machine (no --force: its Depends must really be satisfied), the installed commands run,
// the installed unit's ExecStart serves under the unit's capability bounding set, and
// `dpkg --purge` leaves nothing behind. All of it in a scratch copy of the machine (see Scratch):
// its installed packages and tools are there, and nothing reaches its real dpkg database or files,
// so concurrent runs do not meet and a lockdrop installed on the machine is no reason to skip.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess, type SpawnSyncOptions } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { NlmClient } from '../../src/nlm';
import type { CheckReport, StatusReport } from '../../src/control';
import { NotifyReceiver, type NotifyMessage } from '../support/notify';
import { hasCommand, requireNamespaceRoot, sh, startRpcbind, testInterface } from '../support/netns';

const REPO = path.resolve(__dirname, '..', '..');
const VERSION = (JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const UNIT = '/lib/systemd/system/lockdrop.service';
const VIP = '10.80.0.1';
const FH = Buffer.from('0100010107000000' + '0c0000002a000000', 'hex');

/**
 * The machine as seen through overlays on /usr, /etc and /var (everything dpkg and the maintainer
 * scripts write: /bin, /lib and /sbin are links into /usr here), their writes kept in a tmpfs, in
 * a mount namespace of its own held by one `sleep` (so it is gone when that dies, however the test
 * ends). Commands run in it through nsenter; its files are read through /proc/PID/root. /run
 * (the test namespace's private tmpfs) and the network namespace are the test's own.
 */
class Scratch {
  private constructor(private readonly anchor: ChildProcess, private readonly dir: string) {}

  static async create(): Promise<Scratch> {
    const dir = mkdtempSync(path.join(tmpdir(), 'lockdrop-pkg-'));
    const script = `set -e; mount -t tmpfs lockdrop-pkg "$1"
      for d in usr etc var; do mkdir "$1/$d.up" "$1/$d.work"; mount -t overlay "lockdrop-pkg-$d" -o "lowerdir=/$d,upperdir=$1/$d.up,workdir=$1/$d.work" "/$d"; done
      echo ready; exec sleep infinity`;
    const anchor = spawn('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', script, 'scratch', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    anchor.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
    await new Promise<void>((resolve, reject) => {
      anchor.stdout!.setEncoding('utf8').once('data', () => resolve());
      anchor.once('exit', (code) => reject(new Error(`the scratch overlays failed (${code}): ${err}`)));
    });
    return new Scratch(anchor, dir);
  }

  /** argv to run `cmd` inside. */
  argv(cmd: string, args: string[]): [string, string[]] {
    return ['nsenter', [`--target=${this.anchor.pid}`, '--mount', '--', cmd, ...args]];
  }

  run(cmd: string, args: string[], opts: SpawnSyncOptions = {}): { status: number | null; stdout: string; stderr: string } {
    const [c, a] = this.argv(cmd, args);
    const r = spawnSync(c, a, { encoding: 'utf8', ...opts });
    return { status: r.status, stdout: String(r.stdout), stderr: String(r.stderr) };
  }

  /** Runs `cmd` inside; its stdout, or throws with its output. */
  sh(cmd: string, args: string[]): string {
    const r = this.run(cmd, args);
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stdout}${r.stderr}`);
    return r.stdout;
  }

  /** A path of the scratch machine, readable from here (an absolute symlink in it resolves against ours: see has). */
  path(p: string): string {
    return `/proc/${this.anchor.pid}/root${p}`;
  }

  /** Whether `p` exists in the scratch machine, a symlink counting as itself (lstat). */
  has(p: string): boolean {
    try {
      lstatSync(this.path(p));
      return true;
    } catch {
      return false;
    }
  }

  async dispose(): Promise<void> {
    if (this.anchor.exitCode === null) {
      const gone = new Promise((r) => this.anchor.once('exit', r));
      this.anchor.kill('SIGKILL');
      await gone;
    }
    rmdirSync(this.dir); // the tmpfs on it went with the namespace
  }
}

/** The unit's value of a [Service] key (last one wins, as in systemd). */
function unitKey(unit: string, key: string): string {
  const values = unit.split('\n').filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));
  assert.ok(values.length, `${key}= in the unit`);
  return values[values.length - 1]!;
}

describe('package: the Debian package, installed with dpkg', function () {
  this.timeout(300_000);
  let deb: string;
  let ours = false;
  let execStart: { pid: number; messages: NotifyMessage[]; log: string } | undefined;
  let m: Scratch;
  /** What the machine itself says of lockdrop: must not change while the test installs and purges. */
  const machine = (): string => `${spawnSync('dpkg-query', ['-W', '-f=${Status} ${Version}', 'lockdrop'], { encoding: 'utf8' }).stdout} ${existsSync('/usr/lib/lockdrop')}`;
  let machineBefore: string;
  const installed = (): boolean => m.run('dpkg-query', ['-W', '-f=${Status}', 'lockdrop']).stdout.includes('install ok installed');
  const dpkg = (args: string[]): string => {
    const r = m.run('dpkg', args, { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    if (r.status !== 0) throw new Error(`dpkg ${args.join(' ')} exited ${r.status}: ${r.stdout}${r.stderr}`);
    return r.stdout + r.stderr;
  };

  before(async function () {
    requireNamespaceRoot(this);
    for (const tool of ['dpkg', 'dpkg-deb', 'dpkg-shlibdeps', 'nsenter']) if (!hasCommand(tool)) throw new Error(`${tool} is needed to build and install the package`);
    machineBefore = machine();
    m = await Scratch.create();
    // A lockdrop the machine has installed is purged from the copy only: the test starts clean.
    if (installed()) dpkg(['--purge', 'lockdrop']);
    for (const p of ['/etc/lockdrop', '/var/lib/lockdrop', '/usr/lib/lockdrop']) assert.ok(!m.has(p), `${p} exists without the package: refusing to install over it`);
    // The copy is the machine's, and writes stay in it.
    assert.ok(m.has('/var/lib/dpkg/status'), 'the dpkg database in the copy');
  });
  after(async () => {
    await m?.dispose();
  });

  it('npm run package builds build/lockdrop_<version>_<arch>.deb with the code, its production modules, the addon, the probes, the unit, the agent and the man pages', () => {
    const out = execFileSync('npm', ['run', '--silent', 'package'], { cwd: REPO, encoding: 'utf8', timeout: 240_000 }).trim().split('\n').pop()!;
    const arch = sh('dpkg', ['--print-architecture']).trim();
    assert.equal(out, `build/lockdrop_${VERSION}_${arch}.deb`);
    deb = path.join(REPO, out);
    const field = (f: string) => sh('dpkg-deb', ['-f', deb, f]).trim();
    assert.deepEqual([field('Package'), field('Version'), field('Architecture')], ['lockdrop', VERSION, arch]);
    const depends = field('Depends');
    for (const d of [/nodejs \(>= 20\)/, /rpcbind/, /libbpf1 \(>= [^)]+\)/, /libc6/]) assert.match(depends, d);
    const files = sh('dpkg-deb', ['-c', deb]).split('\n').map((l) => l.split(/\s+/)[5]).filter(Boolean);
    for (const f of [
      './usr/bin/lockdropd', './usr/bin/lockdropctl', './usr/bin/lockdrop', './usr/lib/lockdrop/dist/cli/lockdropd.js', './usr/lib/lockdrop/native/build/Release/lockdrop.node',
      './usr/lib/lockdrop/dist/bpf/lockdrop.bpf.o', './usr/lib/lockdrop/node_modules/pino/package.json', './lib/systemd/system/lockdrop.service', './etc/lockdrop/lockdrop.yaml', './etc/logrotate.d/lockdrop',
      './usr/lib/ocf/resource.d/lockdrop/lockdropd', './usr/lib/lockdrop/keepalived-notify', './usr/share/man/man8/lockdropd.8.gz', './usr/share/man/man8/lockdropctl.8.gz',
      './usr/share/man/man5/lockdrop.yaml.5.gz', './usr/share/man/man1/lockdrop.1.gz', './usr/share/doc/lockdrop/copyright', './usr/share/doc/lockdrop/examples/keepalived.conf',
    ]) assert.ok(files.includes(f), `${f} in the package`);
    // Nothing of the development tree: no sources, maps, tests or devDependencies.
    for (const f of files) assert.doesNotMatch(f, /^\.\/usr\/lib\/lockdrop\/(dist\/.*\.(map|ts)$|src\/|test\/|node_modules\/(mocha|typescript|tsx|fast-check|node-addon-api|@types)\/)/, f);
    assert.equal(sh('dpkg-deb', ['-I', deb, 'conffiles']).trim(), '/etc/lockdrop/lockdrop.yaml\n/etc/logrotate.d/lockdrop');
    // No linters' or npm's dotfiles, no page loading scripts from CDNs, a stripped addon.
    for (const f of files) assert.doesNotMatch(f, /\/(\.eslintrc[^/]*|\.npmignore|\.gitattributes|\.github\/.*)$|node_modules\/pino\/index\.html$/, f);
  });

  it('lintian finds nothing to say (what must stay is overridden, with the reason)', function () {
    if (!deb) this.skip();
    if (!hasCommand('lintian')) this.skip(); // lintian is not installed: nothing to run
    const r = spawnSync('lintian', ['--no-tag-display-limit', deb], { encoding: 'utf8', timeout: 240_000 });
    const tags = r.stdout.split('\n').filter((l) => /^[EWI]: /.test(l));
    assert.deepEqual(tags, []);
  });

  it('dpkg -i installs it: every dependency met by installed packages (no --force); the commands report the version', async function () {
    if (!deb) this.skip(); // the build failed above
    // Debian 12's own nodejs is 18: this machine's Node 20 must be a dpkg package for Depends: nodejs (>= 20).
    const node = m.run('dpkg-query', ['-W', '-f=${Version}', 'nodejs']).stdout;
    assert.ok(node && spawnSync('dpkg', ['--compare-versions', node, 'ge', '20']).status === 0, `nodejs (>= 20) installed as a package (found "${node}")`);
    ours = true;
    dpkg(['-i', deb]);
    assert.ok(installed(), 'dpkg says install ok installed');
    // A first install leaves the unit disabled (README): enabled, it would start at boot outside
    // Pacemaker and, through Conflicts=, stop rpc-statd.
    const wants = m.run('sh', ['-c', 'ls /etc/systemd/system/*.wants/ 2>/dev/null | grep lockdrop']).stdout;
    assert.equal(wants, '', 'no wants/ link after a first install');
    assert.equal(machine(), machineBefore, 'the machine itself untouched');
    for (const cmd of ['lockdropd', 'lockdropctl', 'lockdrop']) assert.equal(m.sh(`/usr/bin/${cmd}`, ['--version']).trim(), `${cmd} ${VERSION}`);
    const conffile = m.sh('/usr/bin/lockdropd', ['--config', '/etc/lockdrop/lockdrop.yaml', '--print-config']);
    assert.equal((JSON.parse(conffile) as { nlmPort: number }).nlmPort, 4045, 'the conffile is a valid configuration');
  });

  it('the unit passes systemd-analyze verify: Type=notify, ExecStart on PATH, CAP_DAC_READ_SEARCH in its bounding set', function () {
    if (!ours) this.skip();
    const v = m.run('systemd-analyze', ['verify', UNIT]);
    assert.equal(v.status, 0, v.stderr);
    assert.equal(v.stderr.trim(), '', 'no warning');
    const unit = readFileSync(m.path(UNIT), 'utf8');
    assert.equal(unitKey(unit, 'Type'), 'notify');
    assert.equal(unitKey(unit, 'ExecStart'), '/usr/bin/lockdropd --config /etc/lockdrop/lockdrop.yaml --fd-store');
    assert.equal(unitKey(unit, 'FileDescriptorStoreMax'), '65536', 'a restart keeps every lock through the file descriptor store');
    assert.match(unitKey(unit, 'ExecReload'), /^\/usr\/bin\/lockdropctl .*reload$/);
    assert.ok(unitKey(unit, 'CapabilityBoundingSet').split(/\s+/).includes('CAP_DAC_READ_SEARCH'));
    assert.equal(unitKey(unit, 'RestartPreventExitStatus'), '64 78');
  });

  it("the installed ExecStart serves under the unit's capabilities: addon and probes load from /usr/lib/lockdrop, a lock through an address, check, a clean stop", async function () {
    if (!ours) this.skip();
    const unit = readFileSync(m.path(UNIT), 'utf8');
    // What systemd would do: the bounding set, no new privileges, the runtime directory, NOTIFY_SOCKET.
    const caps = unitKey(unit, 'CapabilityBoundingSet').split(/\s+/).map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`);
    const [cmd, ...args] = unitKey(unit, 'ExecStart').split(' ');
    sh('install', ['-d', '-m', '0700', '/run/lockdrop']);
    const stopRpcbind = await startRpcbind();
    const nic = testInterface([VIP]);
    const notify = await NotifyReceiver.start('/run/lockdrop-test-notify.sock', [`${VIP}:4045/100021/4`, `127.0.0.1:4045/100021/4`]);
    // nsenter execs setpriv, which execs lockdropd: d.pid is the daemon's.
    const d = spawn(...m.argv('setpriv', ['--bounding-set', `-all,${caps.join(',')}`, '--no-new-privs', cmd!, ...args]), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NOTIFY_SOCKET: notify.path } });
    let log = '';
    d.stdout!.setEncoding('utf8').on('data', (c: string) => (log += c));
    d.stderr!.setEncoding('utf8').on('data', (c: string) => (log += c));
    const exited = new Promise<number | null>((r) => d.once('exit', (code) => r(code)));
    const ctl = (...a: string[]) => m.run('/usr/bin/lockdropctl', [...a]);
    try {
      const ready = async (): Promise<CheckReport> => {
        for (let i = 0; i < 150; i++) {
          const r = ctl('--json', 'check');
          if (r.status === 0) return JSON.parse(r.stdout) as CheckReport;
          if (d.exitCode !== null) throw new Error(`lockdropd exited ${d.exitCode}: ${log}`);
          await new Promise((res) => setTimeout(res, 100));
        }
        throw new Error(`never ready: ${ctl('check').stdout}${log}`);
      };
      assert.deepEqual((await ready()).answered, [VIP]);
      const s = JSON.parse(ctl('status', '--json').stdout) as StatusReport;
      assert.equal(s.version, VERSION);
      assert.equal(s.rpcbind, true);
      assert.deepEqual(s.sources.map((x) => [x.name, x.active]), [['netlink', true], ['bpf', true], ['poll', true]], JSON.stringify(s.sources));
      const client = await NlmClient.create({ server: { address: VIP, port: 4045 }, transport: 'tcp', vers: 4, callerName: 'pkg-client' });
      try {
        assert.equal((await client.lock({ fh: FH, svid: 7, exclusive: true })).status, 'granted');
      } finally {
        await client.close();
      }
      assert.equal(ctl('locks', '--json').stdout.trim().split('\n').length, 1);
      // READY=1 is sent before check passes (check needs the daemon ready): it has arrived by now, if it can.
      await notify.wait((m) => m.fields.READY === '1', 2_000).catch(() => undefined);
    } finally {
      d.kill('SIGTERM');
      assert.equal(await exited, 0, log);
      await notify.close();
      nic.dispose();
      await stopRpcbind();
    }
    assert.ok(!/"level":(50|60)/.test(log), `no error logged: ${log}`);
    execStart = { pid: d.pid!, messages: notify.messages, log };
  });

  it('READY=1 reached NOTIFY_SOCKET from lockdropd itself, when NLM already answered on every address', function () {
    if (!execStart) this.skip();
    const ready = execStart.messages.find((m) => m.fields.READY === '1');
    assert.ok(ready, `READY=1 among ${JSON.stringify(execStart.messages)}`);
    assert.equal(ready.pid, execStart.pid, 'sent by the main process (NotifyAccess=main)');
    assert.deepEqual(ready.nulls, { [`${VIP}:4045/100021/4`]: true, ['127.0.0.1:4045/100021/4']: true });
    assert.match(ready.fields.STATUS ?? '', /^serving 1 address \(10\.80\.0\.1\)/);
    assert.ok(execStart.messages.some((m) => m.fields.STOPPING === '1'), 'STOPPING=1 on SIGTERM');
  });

  it('the installed man pages and OCF agent are well formed', function () {
    if (!ours) this.skip();
    for (const page of ['man1/lockdrop.1.gz', 'man5/lockdrop.yaml.5.gz', 'man8/lockdropd.8.gz', 'man8/lockdropctl.8.gz']) {
      const roff = execFileSync('zcat', [m.path(`/usr/share/man/${page}`)]);
      const r = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-z'], { input: roff, encoding: 'utf8', env: { ...process.env, LC_ALL: 'C.UTF-8' } });
      assert.equal(r.status, 0);
      assert.equal(r.stderr, '', `${page}: ${r.stderr}`);
    }
    const agent = '/usr/lib/ocf/resource.d/lockdrop/lockdropd';
    assert.equal(statSync(m.path(agent)).mode & 0o777, 0o755);
    // The agent's log (its default `log`) is rotated.
    const defaultLog = /name="log"[\s\S]*?default="([^"]+)"/.exec(m.run(agent, ['meta-data'], { env: { ...process.env, OCF_ROOT: '/usr/lib/ocf' } }).stdout)?.[1];
    assert.equal(defaultLog, '/var/log/lockdrop/lockdropd.log');
    assert.match(readFileSync(m.path('/etc/logrotate.d/lockdrop'), 'utf8'), /^\/var\/log\/lockdrop\/\*\.log \{[\s\S]*copytruncate[\s\S]*\}/m);
    const meta = m.run(agent, ['meta-data'], { env: { ...process.env, OCF_ROOT: '/usr/lib/ocf' } });
    assert.equal(meta.status, 0);
    const lint = spawnSync('xmllint', ['--noout', '--valid', '-'], { input: meta.stdout, cwd: '/usr/share/resource-agents', encoding: 'utf8' });
    assert.equal(lint.status, 0, lint.stderr);
  });

  it('dpkg --purge leaves nothing: files, conffile, state, runtime folder, the links of an enabled unit', async function () {
    if (!ours) this.skip();
    m.sh('systemctl', ['enable', 'lockdrop.service']); // what an operator does; the purge must undo it
    assert.ok(m.has('/etc/systemd/system/multi-user.target.wants/lockdrop.service'));
    const listed = m.sh('dpkg', ['-L', 'lockdrop']).split('\n').filter(Boolean);
    dpkg(['--purge', 'lockdrop']);
    assert.ok(!installed());
    // Folders other packages own (/usr/bin, /lib/systemd/system, ...) stay; nothing of ours does.
    // (/lib is one of them, through the link to usr/lib.)
    const shared = (p: string) => statSync(m.path(p), { throwIfNoEntry: false })?.isDirectory() === true && readdirSync(m.path(p)).length > 0;
    const left = listed.filter((p) => m.has(p) && !shared(p));
    assert.deepEqual(left, []);
    for (const p of ['/usr/lib/lockdrop', '/etc/lockdrop', '/var/lib/lockdrop', '/run/lockdrop', '/usr/lib/ocf/resource.d/lockdrop', '/etc/systemd/system/multi-user.target.wants/lockdrop.service'])
      assert.ok(!m.has(p), `${p} removed`);
    assert.equal(m.run('sh', ['-c', 'ls /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked 2>/dev/null | grep lockdrop']).stdout, '');
    assert.equal(machine(), machineBefore, 'the machine itself untouched');
  });
});
