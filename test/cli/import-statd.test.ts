// `lockdrop import-statd` on records the real rpc.statd and sm-notify wrote: hosts monitored
// through SM_MON (as the kernel's lockd asks) land in sm/, a reboot's sm-notify moves them to
// sm.bak/ while it still has to tell them; the import brings both (and the state number) to one
// server address, and lockdropd then lists them and notifies them from that address.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { RpcClient } from '../../src/rpc';
import { NSM_PROGRAM, NSM_VERSION, SM_MON, STAT_SUCC, decodeSmStatRes, encodeMon, readNfsUtilsStateDir } from '../../src/nsm';
import type { MonitorView, StatusReport } from '../../src/control';
import { hasCommand, requireNamespaceRoot, startRpcbind, testInterface } from '../support/netns';
import { REPO, ensureBuilt, listing, spawnDaemon, type DaemonProcess } from '../daemon/harness';

const VIP = '10.84.0.1';
const STATD_PORT = 40480;
const LOCKDROP = path.join(REPO, 'bin', 'lockdrop');

/** rpc.statd in its own mount namespace, with a hosts file naming client-c. */
function startStatd(dir: string, hosts: string, extra: string[] = []): ChildProcess {
  return spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', `mount --bind ${hosts} /etc/hosts && exec rpc.statd -F -d -P ${dir} -p ${STATD_PORT} ${extra.join(' ')}`], { stdio: ['ignore', 'pipe', 'pipe'] });
}

async function waitFor(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(check(), `timed out waiting for ${what}`);
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

/**
 * SM_MON to rpc.statd as the kernel's lockd sends it: from 127.0.0.1, a privileged port, callback
 * NLM's proc 16. rpc.statd binds privileged ports of its own (bindresvport): a port it took is
 * skipped for the next one up.
 */
async function monitor(monName: string, sourcePort: number): Promise<void> {
  for (let port = sourcePort; ; port += 32) {
    const c = new RpcClient({ transport: 'udp', host: '127.0.0.1', port: STATD_PORT, source: '127.0.0.1', sourcePort: port, timeoutMs: 3_000 });
    try {
      const r = await c.call(NSM_PROGRAM, NSM_VERSION, SM_MON, (w) => encodeMon(w, { monId: { monName, myId: { myName: VIP, myProg: 100021, myVers: 4, myProc: 16 } }, priv: Buffer.alloc(16, 7) }), decodeSmStatRes);
      assert.equal(r.res, STAT_SUCC, `rpc.statd monitors ${monName}`);
      return;
    } catch (err) {
      if (!/EADDRINUSE/.test(String(err)) || port + 32 >= 1024) throw err;
    } finally {
      c.close();
    }
  }
}

describe('cli: lockdrop import-statd on records of the real rpc.statd', function () {
  this.timeout(90_000);
  let dir: string;
  let stopRpcbind: (() => Promise<void>) | undefined;
  let nic: ReturnType<typeof testInterface> | undefined;
  let d: DaemonProcess | undefined;
  const children: ChildProcess[] = [];

  before(async function () {
    requireNamespaceRoot(this);
    for (const c of ['rpc.statd', 'sm-notify', 'rpcbind', 'unshare']) if (!hasCommand(c)) throw new Error(`${c} is needed (nfs-common, rpcbind: bash scripts/setup.sh)`);
    ensureBuilt();
    dir = mkdtempSync(path.join(tmpdir(), 'lockdrop-import-'));
    stopRpcbind = await startRpcbind();
  });
  after(async () => {
    for (const c of children) await stop(c);
    d?.cleanup();
    nic?.dispose();
    await stopRpcbind?.();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('imports sm/ and sm.bak/ and the state number for one address; lockdropd lists and notifies them from it; refused while lockdropd runs', async () => {
    const nfs = path.join(dir, 'nfs');
    for (const sub of ['sm', 'sm.bak']) mkdirSync(path.join(nfs, sub), { recursive: true });
    const hosts = path.join(dir, 'hosts');
    writeFileSync(hosts, `127.0.0.1 localhost\n10.84.0.13 client-c\n`);

    // 1. rpc.statd monitors three hosts (one by name): it writes sm/<mon_name>.
    let statd = startStatd(nfs, hosts, ['-L']);
    children.push(statd);
    let log = '';
    statd.stderr!.setEncoding('utf8').on('data', (c: string) => (log += c));
    await waitFor(`rpc.statd to start: ${log}`, () => /Waiting for client connections/.test(log));
    for (const [i, name] of ['10.84.0.11', '10.84.0.12', 'client-c'].entries()) await monitor(name, 700 + i);
    assert.deepEqual(readdirSync(path.join(nfs, 'sm')).sort(), ['10.84.0.11', '10.84.0.12', 'client-c']);
    await stop(statd);

    // 2. A reboot: sm-notify moves them to sm.bak/ and keeps them there while they do not answer.
    const notify = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', `mount --bind ${hosts} /etc/hosts && exec sm-notify -d -f -P ${nfs}`], { stdio: 'ignore' });
    children.push(notify);
    await waitFor('sm-notify to move the records to sm.bak/', () => readdirSync(path.join(nfs, 'sm.bak')).length === 3);
    await stop(notify);

    // 3. rpc.statd again (no notify this time), monitoring one more host: sm/ and sm.bak/ both hold records.
    statd = startStatd(nfs, hosts, ['-L']);
    children.push(statd);
    log = '';
    statd.stderr!.setEncoding('utf8').on('data', (c: string) => (log += c));
    await waitFor(`rpc.statd to start again: ${log}`, () => /Waiting for client connections/.test(log));
    await monitor('10.84.0.14', 710);
    await stop(statd);
    assert.deepEqual(readdirSync(path.join(nfs, 'sm')), ['10.84.0.14']);
    const theirState = (await readNfsUtilsStateDir(nfs, VIP)).state!;
    assert.ok(theirState > 0, "rpc.statd's state file");

    // The import, resolving client-c as rpc.statd did.
    const stateDir = path.join(dir, 'lockdrop');
    const imp = spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', `mount --bind ${hosts} /etc/hosts && exec ${process.execPath} ${LOCKDROP} import-statd --json --from ${nfs} --ip ${VIP} --state-dir ${stateDir}`], { encoding: 'utf8' });
    assert.equal(imp.status, 0, imp.stderr);
    const report = JSON.parse(imp.stdout) as { records: number; state: number; skipped: unknown[]; address: string };
    assert.deepEqual({ records: report.records, state: report.state, skipped: report.skipped, address: report.address }, { records: 4, state: theirState, skipped: [], address: VIP });
    const text = spawnSync(process.execPath, [LOCKDROP, 'import-statd', '--from', nfs, '--ip', VIP, '--state-dir', stateDir], { encoding: 'utf8' });
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /cannot find an address for client-c/, 'without the hosts file the name is reported, not guessed');
    assert.match(text.stdout, /systemctl mask rpc-statd-notify\.service/);

    // lockdropd with the address: the imported hosts are its records, notified from VIP with a state above rpc.statd's.
    nic = testInterface([VIP]);
    d = spawnDaemon(['--state-dir', stateDir, '--address', VIP, '--sources', 'netlink,poll']);
    await d.started();
    const monitors = listing<MonitorView>(d.ctl(['monitors', '--ip', VIP, '--json']).stdout);
    assert.deepEqual(monitors.map((m) => `${m.host}@${m.address}`).sort(), ['10.84.0.11@10.84.0.11', '10.84.0.12@10.84.0.12', '10.84.0.14@10.84.0.14', 'client-c@10.84.0.13']);
    const arrived = await d.waitLog((l) => l.address === VIP && / arrived: /.test(l.msg));
    assert.ok((arrived.state as number) > theirState && (arrived.state as number) % 2 === 1, `state ${arrived.state} after rpc.statd's ${theirState}`);
    assert.equal(arrived.monitors, 4);
    assert.equal((JSON.parse(d.ctl(['status', '--json']).stdout) as StatusReport).monitors, 4);

    // A running lockdropd on the state directory: the import is refused, nothing written.
    const refused = spawnSync(process.execPath, [LOCKDROP, 'import-statd', '--from', nfs, '--ip', VIP, '--state-dir', stateDir], { encoding: 'utf8' });
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, new RegExp(`another lockdropd \\(pid ${d.child.pid}\\) is running with this state directory`));
    assert.ok(existsSync(path.join(stateDir, VIP)));
  });
});
