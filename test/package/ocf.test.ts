// The Pacemaker resource agent ocf:lockdrop:lockdropd (contrib/ocf/lockdropd): resource-agents'
// own ocf-tester passes it, and its monitor tells stopped (7) from hung (1) from serving (0),
// checking NLM on the floating address it serves. A mistake in the file on disk never stops a
// healthy daemon (monitor warns), and stop succeeds only once the process is gone.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { hasCommand, requireNamespaceRoot, startRpcbind, testInterface } from '../support/netns';
import { REPO, ensureBuilt } from '../daemon/harness';

const AGENT = path.join(REPO, 'contrib', 'ocf', 'lockdropd');
const VIP = '10.82.0.1';

describe('package: the OCF resource agent', function () {
  this.timeout(180_000);
  let dir: string;
  let config: string;
  let stopRpcbind: (() => Promise<void>) | undefined;
  let nic: ReturnType<typeof testInterface> | undefined;

  /** The agent's parameters as Pacemaker passes them (OCF_RESKEY_*). */
  const params = (extra: Record<string, string> = {}): Record<string, string> => ({
    config,
    lockdropd: path.join(REPO, 'bin', 'lockdropd'),
    lockdropctl: path.join(REPO, 'bin', 'lockdropctl'),
    log: path.join(dir, 'lockdropd.log'),
    ...extra,
  });
  const agent = (action: string, extra: Record<string, string> = {}, env: Record<string, string> = {}) =>
    spawnSync(AGENT, [action], {
      encoding: 'utf8',
      timeout: 90_000,
      env: { ...process.env, OCF_ROOT: '/usr/lib/ocf', OCF_RESOURCE_INSTANCE: 'lockdrop-test', OCF_RESKEY_CRM_meta_timeout: '20000', ...env, ...Object.fromEntries(Object.entries(params(extra)).map(([k, v]) => [`OCF_RESKEY_${k}`, v])) },
    });

  before(async function () {
    requireNamespaceRoot(this);
    if (!hasCommand('ocf-tester')) throw new Error('ocf-tester (resource-agents) is needed: bash scripts/setup.sh installs it');
    ensureBuilt();
    dir = mkdtempSync(path.join(tmpdir(), 'lockdrop-ocf-'));
    config = path.join(dir, 'lockdrop.yaml');
    writeFileSync(config, JSON.stringify({ stateDir: path.join(dir, 'state'), control: path.join(dir, 'run', 'control.sock'), nlmPort: 40471, nsmPort: 40472, addresses: [VIP], sources: ['netlink', 'poll'], pollInterval: 0.5 }));
    stopRpcbind = await startRpcbind();
    nic = testInterface([VIP]);
  });
  after(async () => {
    if (config) agent('stop');
    nic?.dispose();
    await stopRpcbind?.();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('passes ocf-tester (meta-data against ra-api-1.dtd, probes, start, monitor, stop, twice each)', () => {
    const args = Object.entries(params()).flatMap(([k, v]) => ['-o', `${k}=${v}`]);
    const r = spawnSync('ocf-tester', ['-n', 'lockdrop-test', ...args, AGENT], { encoding: 'utf8', timeout: 170_000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /passed all tests/);
  });

  it('monitor: 7 when stopped or killed, 1 when the daemon hangs, 0 when it serves NLM on the floating address', () => {
    assert.equal(agent('monitor').status, 7);
    const start = agent('start');
    assert.equal(start.status, 0, start.stdout + start.stderr);
    assert.match(start.stderr + start.stdout, new RegExp(`serves ${VIP.replace(/\./g, '\\.')}`));
    assert.equal(agent('monitor').status, 0);
    const pid = Number(readFileSync(path.join(dir, 'state', `.lockdropd-${spawnSync('uname', ['-n'], { encoding: 'utf8' }).stdout.trim()}.pid`), 'utf8'));
    process.kill(pid, 'SIGSTOP');
    try {
      const hung = agent('monitor');
      assert.equal(hung.status, 1);
      assert.match(hung.stderr + hung.stdout, /running but not serving/);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    assert.equal(agent('monitor').status, 0);
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 100 && spawnSync('kill', ['-0', String(pid)]).status === 0; i++) spawnSync('sleep', ['0.05']);
    assert.equal(agent('monitor').status, 7, 'a dead daemon (its pid file left behind) is not running');
    assert.equal(agent('stop').status, 0);
  });

  const daemonPid = (): number => Number(readFileSync(path.join(dir, 'state', `.lockdropd-${spawnSync('uname', ['-n'], { encoding: 'utf8' }).stdout.trim()}.pid`), 'utf8'));
  const gone = (pid: number): boolean => spawnSync('kill', ['-0', String(pid)]).status !== 0;
  const started = (): number => {
    const start = agent('start');
    assert.equal(start.status, 0, start.stdout + start.stderr);
    return daemonPid();
  };

  it('a bad file on disk while the daemon runs: monitor 0 with a warning, validate-all 6, reload keeps it serving, stop ends it', () => {
    const good = readFileSync(config, 'utf8');
    const pid = started();
    try {
      writeFileSync(config, 'grace: soon\n');
      const m = agent('monitor');
      assert.equal(m.status, 0, m.stdout + m.stderr);
      assert.match(m.stderr + m.stdout, /configuration file .* is invalid: lockdropd keeps running the configuration it has.*grace: Expected number/);
      assert.equal(agent('monitor', {}, { OCF_RESKEY_CRM_meta_interval: '0' }).status, 0, 'a probe finds it running');
      assert.equal(agent('validate-all').status, 6);
      const r = agent('reload');
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stderr + r.stdout, /refused to reload .* keeps its running configuration/);
      assert.equal(agent('monitor').status, 0);
      const s = agent('stop');
      assert.equal(s.status, 0, s.stdout + s.stderr);
      assert.ok(gone(pid), 'stop returned success while lockdropd still runs');
      assert.equal(agent('monitor').status, 7);
    } finally {
      writeFileSync(config, good);
    }
  });

  it('stop: SIGKILL before the stop timeout when SIGTERM does not end it; success once the process is gone', () => {
    const pid = started();
    process.kill(pid, 'SIGSTOP');
    const t0 = Date.now();
    const s = agent('stop', {}, { OCF_RESKEY_CRM_meta_timeout: '8000' });
    const ms = Date.now() - t0;
    assert.equal(s.status, 0, s.stdout + s.stderr);
    assert.ok(gone(pid), 'lockdropd is still there');
    assert.match(s.stderr + s.stdout, /did not stop within 3s of SIGTERM: SIGKILL/);
    assert.ok(ms >= 2_900 && ms < 8_000, `stop took ${ms} ms`);
  });

  it('reload: the daemon re-reads its configuration file (lockdropctl reload)', () => {
    const good = readFileSync(config, 'utf8');
    const pid = started();
    try {
      writeFileSync(config, JSON.stringify({ ...JSON.parse(good), grace: 33 }));
      const r = agent('reload');
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stderr + r.stdout, /configuration reloaded: .*grace/);
      assert.equal(daemonPid(), pid, 'reloaded, not restarted');
      assert.equal(agent('monitor').status, 0);
    } finally {
      writeFileSync(config, good);
      assert.equal(agent('stop').status, 0);
    }
  });

  it('validate-all and start refuse a bad configuration (6) naming the key, a missing one (5); warn about ephemeral ports', () => {
    const bad = path.join(dir, 'bad.yaml');
    writeFileSync(bad, 'grace: soon\n');
    const v = agent('validate-all', { config: bad });
    assert.equal(v.status, 6);
    assert.match(v.stderr + v.stdout, /grace: Expected number, received string/);
    assert.equal(agent('start', { config: bad }).status, 6);
    assert.equal(agent('validate-all', { config: path.join(dir, 'missing.yaml') }).status, 5);
    const ephemeral = path.join(dir, 'ephemeral.yaml');
    writeFileSync(ephemeral, JSON.stringify({ stateDir: path.join(dir, 'state2'), control: path.join(dir, 'run2', 'control.sock') }));
    const w = agent('validate-all', { config: ephemeral });
    assert.equal(w.status, 0);
    assert.match(w.stderr + w.stdout, /nlmPort is 0 \(ephemeral\): use the same fixed NLM port on every node/);
  });
});
