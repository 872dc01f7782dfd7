// The control socket's peer check against a real lockdropd, with each of its two methods:
// SO_PEERCRED (the native addon) and the fallback without it (ss and /proc). The socket's file
// permissions are opened up here so that the uid check alone decides.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync } from 'node:fs';
import path from 'node:path';
import { requireNamespaceRoot, sh, uniqueName } from '../support/netns';
import { DaemonProcess, LOCKDROPD, daemonDir, ensureBuilt } from './harness';

// One request on a new connection; prints the reply line (or nothing if the server closed first).
const CLIENT = `import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b'{"id":1,"cmd":"status"}\\n')
print(s.makefile().readline(), end='')`;

type Reply = { ok: boolean; error?: string; result?: { pid: number } };

/** The reply to `status` from a client run under `prefix` (a command line: setpriv, unshare, ip netns exec). */
function ask(control: string, prefix: string[] = []): Reply {
  const argv = [...prefix, '/usr/bin/python3', '-c', CLIENT, control];
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 10_000 });
  assert.equal(r.status, 0, `client ${argv.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout) as { ok: boolean; error?: string; result?: { pid: number } };
}

const NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];

/** lockdropd as PID 1 of a PID namespace (and /proc) of its own, as in a container. */
function startDaemon(env: NodeJS.ProcessEnv): DaemonProcess {
  const dir = daemonDir();
  const control = path.join(dir, 'run', 'control.sock');
  const argv = ['--pid', '--fork', '--mount-proc', '--kill-child', '--', process.execPath, LOCKDROPD, '--state-dir', path.join(dir, 'state'), '--control', control, '--rpcbind', 'off', '--sources', 'poll', '--nlm-port', '0', '--nsm-port', '0'];
  return new DaemonProcess(spawn('unshare', argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } }), dir, control);
}

for (const method of ['SO_PEERCRED', 'ss'] as const) {
  describe(`daemon: the control socket's peer check by ${method}`, function () {
    this.timeout(60_000);
    let d: DaemonProcess;
    /** Asks from inside the daemon's PID namespace (and /proc), run under `prefix`, then `inner`. */
    const askInside = (prefix: string[] = [], inner: string[] = []): Reply =>
      ask(d.control, [...prefix, 'nsenter', `--target=${pidInside(d)}`, '--pid', '--mount', '--', ...inner]);

    before(async function () {
      requireNamespaceRoot(this);
      ensureBuilt();
      d = startDaemon(method === 'ss' ? { LOCKDROP_NO_ADDON: '1' } : {});
      await d.started();
      chmodSync(d.dir, 0o711);
      chmodSync(path.dirname(d.control), 0o711);
      chmodSync(d.control, 0o666);
    });
    after(async () => {
      if (!d) return;
      // unshare --fork does not pass SIGTERM on: stop lockdropd itself, unshare follows.
      if (d.child.exitCode === null) process.kill(pidInside(d), 'SIGTERM');
      await d.exited;
      d.cleanup();
    });

    it(method === 'ss' ? 'says at start that it identifies peers the slow way, and why' : 'says nothing about the peer check at start', () => {
      const said = d.logs.find((l) => /peers are identified by ss/.test(l.msg));
      if (method === 'ss') assert.match(String(said?.reason), /LOCKDROP_NO_ADDON/);
      else assert.equal(said, undefined);
    });

    it('refuses nobody, with the uid it saw', async () => {
      const r = askInside([], NOBODY);
      assert.equal(r.ok, false);
      assert.match(String(r.error), /permission denied: the control socket serves root only \(peer uid 65534\)/);
      await d.waitLog((l) => l.msg.includes('non-root peer refused') && l.uid === 65534 && l.peerCheck === method);
    });

    it('refuses nobody posing as root of its own user namespace', () => {
      const r = askInside([], [...NOBODY, 'unshare', '--user', '--map-root-user', '--']);
      assert.equal(r.ok, false);
      assert.match(String(r.error), /\(peer uid 65534\)/);
    });

    it('serves root in another network namespace', () => {
      const ns = uniqueName('ldpeer');
      sh('ip', ['netns', 'add', ns]);
      try {
        const r = askInside(['ip', 'netns', 'exec', ns]);
        assert.equal(r.ok, true, r.error);
      } finally {
        sh('ip', ['netns', 'del', ns], { allowFail: true });
      }
    });

    it('serves root in a child PID namespace of the daemon\'s', () => {
      // The daemon's PID namespace contains the client's: its /proc shows it, both methods see it.
      const r = askInside([], ['unshare', '--pid', '--fork', '--']);
      assert.equal(r.ok, true, r.error);
    });

    if (method === 'SO_PEERCRED') {
      it('serves root outside the daemon\'s PID namespace (the kernel recorded its uid at connect)', () => {
        const r = ask(d.control);
        assert.equal(r.ok, true, r.error);
        assert.equal(r.result?.pid, 1, 'the daemon is PID 1 of its own namespace');
      });
    } else {
      it('refuses root outside the daemon\'s PID namespace, saying why (its /proc cannot show the client)', () => {
        const r = ask(d.control);
        assert.equal(r.ok, false);
        assert.match(String(r.error), /peer uid unknown: no process holding the peer socket is visible \(in another PID namespace/);
      });
    }
  });
}

/** A pid, in our namespace, of a process inside the daemon's PID namespace (the daemon, below unshare). */
function pidInside(d: DaemonProcess): number {
  const children = spawnSync('pgrep', ['-P', String(d.child.pid)], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean);
  assert.equal(children.length, 1, `unshare's children: ${children.join(' ')}`);
  return Number(children[0]);
}
