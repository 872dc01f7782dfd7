// lockdropctl against a real lockdropd: every command as a table and as JSON, the watch stream,
// the root-only control socket, and garbage on the socket.
import assert from 'node:assert/strict';
import { chmodSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import { NlmClient } from '../../src/nlm';
import type { LockView, StatusReport } from '../../src/control';
import { requireNamespaceRoot, sh, testInterface, uniqueName } from '../support/netns';
import { LOCKDROPCTL, ensureBuilt, listing, spawnDaemon, spawnWatch, type DaemonProcess } from '../daemon/harness';

const fh = (fsid: number, ino: number) => Buffer.from(`01000101${Buffer.from(Uint32Array.of(fsid).buffer).toString('hex')}${Buffer.from(Uint32Array.of(ino, 1).buffer).toString('hex')}`, 'hex');

/** Polls `check` every 50 ms until it holds (at most 10 s). */
async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting until ${what}`);
}

/** Sends raw lines on the control socket and collects reply lines until `count` arrive or it closes. */
function raw(control: string, payload: string, count: number): Promise<Record<string, unknown>[]> {
  return new Promise((resolve, reject) => {
    const s = connect(control);
    const out: Record<string, unknown>[] = [];
    let buf = '';
    const timer = setTimeout(() => (s.destroy(), reject(new Error(`only ${out.length} replies: ${JSON.stringify(out)}`))), 5_000);
    s.setEncoding('utf8');
    s.on('data', (c: string) => {
      buf += c;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        out.push(JSON.parse(buf.slice(0, nl)));
        buf = buf.slice(nl + 1);
      }
      if (out.length >= count) {
        clearTimeout(timer);
        s.destroy();
        resolve(out);
      }
    });
    s.on('close', () => (clearTimeout(timer), resolve(out)));
    s.on('error', reject);
    s.write(payload);
  });
}

describe('cli: lockdropctl and the control socket', function () {
  this.timeout(60_000);
  let d: DaemonProcess;
  let a: NlmClient;
  let b: NlmClient;

  before(async function () {
    requireNamespaceRoot(this);
    ensureBuilt();
    d = spawnDaemon(['--grace', '30'], { config: { exports: [{ path: '/srv/a', fsid: 1, secure: false, fileLocks: false }, { path: '/srv/b', fsid: 2, secure: false, fileLocks: false }] } });
    const s = await d.started();
    const server = { address: '127.0.0.1', port: s.nlmPort as number };
    a = await NlmClient.create({ server, transport: 'tcp', vers: 4, callerName: 'alpha' });
    b = await NlmClient.create({ server, transport: 'udp', vers: 3, callerName: 'beta' });
  });
  after(async () => {
    await a?.close();
    await b?.close();
    d?.cleanup();
  });

  it('status: a table for people, JSON for scripts', async () => {
    const t = d.ctl(['status']);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /lockdropd pid \d+/);
    assert.match(t.stdout, /sources: poll/);
    assert.match(t.stdout, /ADDRESS\s+PRESENT\s+DRAINING\s+GRACE\s+RECLAIMED\s+LOCKS\s+JOURNAL\s+MONITORS/);
    const j = JSON.parse(d.ctl(['status', '--json']).stdout) as StatusReport;
    assert.equal(j.pid, d.child.pid);
    assert.deepEqual(j.sources.map((x) => [x.name, x.active]), [['poll', true]]);
    for (const addr of j.addresses) for (const k of ['address', 'present', 'draining', 'grace', 'locks', 'monitors', 'journal', 'reclaim']) assert.ok(k in addr, k);
  });

  it('locks: every lock with server, client, svid, offset, length, exclusive, fh, since; filters by ip, client and export', async () => {
    assert.equal((await a.lock({ fh: fh(1, 10), svid: 11, exclusive: true, offset: 0n, length: 100n })).status, 'granted');
    assert.equal((await a.lock({ fh: fh(2, 20), svid: 12, exclusive: false })).status, 'granted');
    assert.equal((await b.lock({ fh: fh(1, 11), svid: 21, exclusive: true, offset: 5n, length: 0n })).status, 'granted');
    const lines = d.ctl(['locks', '--json']).stdout.trim().split('\n');
    assert.equal(lines.length, 3);
    const locks = lines.map((l) => JSON.parse(l) as LockView);
    const first = locks.find((l) => l.svid === 11)!;
    assert.deepEqual(
      { server: first.server, client: first.client, offset: first.offset, length: first.length, exclusive: first.exclusive, fh: first.fh, export: first.export },
      { server: '127.0.0.1', client: 'alpha@127.0.0.1', offset: '0', length: '100', exclusive: true, fh: fh(1, 10).toString('hex'), export: '/srv/a' },
    );
    assert.ok(Date.now() - Date.parse(first.since) < 60_000);
    const count = (args: string[]) => d.ctl(['locks', '--json', ...args]).stdout.trim().split('\n').filter(Boolean).length;
    assert.equal(count(['--client', 'alpha']), 2);
    assert.equal(count(['--client', 'beta@127.0.0.1']), 1);
    assert.equal(count(['--export', '/srv/a']), 2);
    assert.equal(count(['--ip', '127.0.0.1']), 3);
    assert.equal(count(['--address', '127.0.0.1']), 3);
    assert.ok(locks.every((l) => l.awaitingReclaim === false), 'held, none awaiting a reclaim');
    assert.equal(count(['--ip', '10.1.2.3']), 0);
    const table = d.ctl(['locks']).stdout;
    assert.match(table, /SERVER\s+CLIENT\s+SVID\s+TYPE\s+OFFSET\s+LENGTH\s+EXPORT\s+FH\s+SINCE/);
    assert.match(table, /127\.0\.0\.1\s+beta@127\.0\.0\.1\s+21\s+write\s+5\s+EOF\s+\/srv\/a/);
  });

  it('monitors: the hosts monitored through each server address', () => {
    // A listing is one JSON object per line, as `locks --json`.
    const m = listing<{ server: string; host: string }>(d.ctl(['monitors', '--json']).stdout);
    assert.deepEqual(m.map((x) => `${x.host} via ${x.server}`).sort(), ['alpha via 127.0.0.1', 'beta via 127.0.0.1']);
    assert.match(d.ctl(['monitors', '--ip', '127.0.0.1']).stdout, /SERVER\s+HOST\s+ADDRESS\s+STATE/);
  });

  it('grace start/end for one address this node holds; refused for one it does not hold or manage', async () => {
    const nic = testInterface(['10.1.2.3']);
    try {
      await until(() => (JSON.parse(d.ctl(['status', '--json']).stdout) as StatusReport).addresses.some((x) => x.address === '10.1.2.3' && x.present), 'the poll source sees 10.1.2.3');
      await graceForOneAddress();
    } finally {
      nic.dispose();
    }
    const elsewhere = d.ctl(['grace', 'start', '--ip', '10.1.2.9']);
    assert.equal(elsewhere.code, 1);
    assert.match(elsewhere.stderr, /10\.1\.2\.9 is not held by this node/);
    assert.match(d.ctl(['grace', 'start', '--ip', '127.0.0.1']).stderr, /127\.0\.0\.1 is not an address lockdrop manages here/);
    assert.match(d.ctl(['drop', '--ip', '10.1.2.9']).stderr, /10\.1\.2\.9 is not held by this node and no lock was taken through it/);
    assert.match(d.ctl(['drop', '--ip', '127.0.0.2']).stderr, /127\.0\.0\.2 is not an address lockdrop manages here and no lock was taken through it/);
  });

  async function graceForOneAddress(): Promise<void> {
    const started = JSON.parse(d.ctl(['grace', 'start', '--ip', '10.1.2.3', '--seconds', '20', '--json']).stdout) as { target: string; scope: string; grace: string };
    assert.deepEqual([started.target, started.scope], ['10.1.2.3', 'address']);
    assert.ok(Date.parse(started.grace) - Date.now() > 15_000);
    const s = JSON.parse(d.ctl(['status', '--json']).stdout) as StatusReport;
    assert.equal(s.addresses.find((x) => x.address === '10.1.2.3')?.grace, started.grace);
    assert.match(d.ctl(['grace', 'end', '--ip', '10.1.2.3']).stdout, /10\.1\.2\.3: no grace period/);
    assert.notEqual(d.ctl(['grace', 'pause', '--ip', '10.1.2.3']).code, 0);
    assert.match(d.ctl(['grace', 'start']).stderr, /exactly one of --ip, --export/);
  }

  it('grace start/end for one export: non-reclaims on it are refused on every address, others not', async () => {
    assert.match(d.ctl(['grace', 'start', '--export', '/srv/b', '--seconds', '20']).stdout, /export \/srv\/b: grace until/);
    assert.equal(JSON.parse(d.ctl(['status', '--json']).stdout).exportGraces[0].export, '/srv/b');
    assert.equal((await a.lock({ fh: fh(2, 40), svid: 13, exclusive: true })).status, 'denied_grace_period');
    assert.equal((await a.lock({ fh: fh(1, 40), svid: 13, exclusive: true })).status, 'granted');
    assert.match(d.ctl(['grace', 'end', '--export', '/srv/b']).stdout, /export \/srv\/b: no grace period/);
    assert.equal((await a.lock({ fh: fh(2, 40), svid: 13, exclusive: true })).status, 'granted');
    assert.match(d.ctl(['grace', 'start', '--export', '/srv/nope']).stderr, /no export \/srv\/nope is configured/);
    for (const ino of [1, 2]) assert.equal((await a.unlock({ fh: fh(ino, 40), svid: 13 })).status, 'granted');
  });

  it('notify: refused for an address this node does not hold (another node may own its records)', () => {
    const r = d.ctl(['notify', '--ip', '10.1.2.4', '--json']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /10\.1\.2\.4 is not a local server address here/);
  });

  it('watch streams grants and drops as JSON lines; drop --client releases exactly that client', async () => {
    const { child: w, events, exited } = spawnWatch(d.control);
    try {
      // Until the watcher is connected grants go unseen: lock and unlock until one shows.
      for (let i = 0; i < 100 && !events.some((e) => e.kind === 'grant'); i++) {
        assert.equal((await b.lock({ fh: fh(2, 31), svid: 23, exclusive: true })).status, 'granted');
        assert.equal((await b.unlock({ fh: fh(2, 31), svid: 23 })).status, 'granted');
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal((await b.lock({ fh: fh(2, 30), svid: 22, exclusive: true })).status, 'granted');
      const drop = d.ctl(['drop', '--client', 'beta', '--json']);
      assert.equal(drop.code, 0, drop.stderr);
      assert.deepEqual({ ...JSON.parse(drop.stdout), ms: 0 }, { target: 'client beta', locks: 2, shares: 0, blocked: 0, clients: 1, woken: 0, ms: 0 });
      const seen = () => events.some((e) => e.kind === 'drop') && events.some((e) => e.kind === 'grant' && /svid 22/.test(e.message));
      for (let i = 0; i < 50 && !seen(); i++) await new Promise((r) => setTimeout(r, 100));
      assert.ok(events.some((e) => e.kind === 'grant' && /beta@127\.0\.0\.1 svid 22/.test(e.message)), JSON.stringify(events));
      assert.ok(events.some((e) => e.kind === 'drop' && /client beta: dropped 2 locks/.test(e.message)), JSON.stringify(events));
      assert.equal(d.ctl(['locks', '--json', '--client', 'alpha']).stdout.trim().split('\n').length, 2, 'alpha keeps its locks');
    } finally {
      w.kill('SIGINT');
    }
    assert.equal(await exited, 0);
  });

  it('drop needs exactly one target', () => {
    const r = d.ctl(['drop', '--ip', '127.0.0.1', '--client', 'alpha']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /exactly one of/);
    assert.match(d.ctl(['drop', '--fsid', '99']).stderr, /no export is configured with fsid 99/);
  });

  it('survives garbage: every malformed request gets an error reply, the connection and server stay usable', async () => {
    const replies = await raw(d.control, 'not json\n{"cmd":"nope","id":2}\n{"cmd":"drop","fsid":-1,"id":3}\n[]\n\n{"cmd":"status","id":4}\n', 5);
    assert.equal(replies.length, 5);
    assert.deepEqual(replies.slice(0, 4).map((r) => r.ok), [false, false, false, false]);
    assert.match(String(replies[0]!.error), /not JSON/);
    assert.equal(replies[1]!.id, 2);
    assert.match(String(replies[2]!.error), /fsid/);
    const status = replies.find((r) => r.id === 4)!;
    assert.equal(status.ok, true);
    // An endless line is cut off, the server carries on.
    const long = await raw(d.control, 'x'.repeat(200_000), 1);
    assert.match(String(long[0]?.error), /longer than/);
    assert.equal(d.ctl(['status']).code, 0);
  });

  it('serves root in another network namespace (the connection is listed in that namespace)', () => {
    const ns = uniqueName('ldctl');
    sh('ip', ['netns', 'add', ns]);
    try {
      const out = sh('ip', ['netns', 'exec', ns, process.execPath, LOCKDROPCTL, 'status', '--json', '--control', d.control]);
      assert.equal((JSON.parse(out) as StatusReport).pid, d.child.pid);
    } finally {
      sh('ip', ['netns', 'del', ns], { allowFail: true });
    }
  });

  it('refuses non-root peers: by the socket permissions, and by the peer uid check behind them', async () => {
    const denied = d.ctl(['status'], { asUser: 65534 });
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /only root may use it|permission denied/i);
    // Open the permissions up: the uid check alone must still refuse, and act on nothing.
    chmodSync(d.dir, 0o711);
    chmodSync(path.dirname(d.control), 0o711);
    chmodSync(d.control, 0o666);
    try {
      const before = d.ctl(['locks', '--json']).stdout;
      const r = d.ctl(['drop', '--ip', '127.0.0.1'], { asUser: 65534 });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /permission denied: the control socket serves root only \(peer uid 65534\)/);
      assert.equal(d.ctl(['locks', '--json']).stdout, before, 'nothing dropped');
      await d.waitLog((l) => l.msg.includes('non-root peer refused') && l.uid === 65534);
    } finally {
      chmodSync(d.control, 0o600);
      chmodSync(path.dirname(d.control), 0o700);
      chmodSync(d.dir, 0o700);
    }
    assert.equal(d.ctl(['status']).code, 0);
  });
});
