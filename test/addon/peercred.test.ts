// SO_PEERCRED through the addon, on real unix sockets: the peer as the kernel recorded it when it
// connected (a process of ours, one run as nobody, one in another PID namespace, a "root" of a
// user namespace), and every bad fd an explicit error.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { peerCredentials, type PeerCredentials } from '../../src/addon';
import { isRoot } from '../support/netns';

const fdOf = (x: Socket | Server): number => (x as unknown as { _handle: { fd: number } })._handle.fd;

// Connects to argv[1], prints its own pid as the kernel of its PID namespace numbers it, waits for EOF.
const CLIENT = `import os, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); print(os.getpid(), flush=True); s.recv(1)`;

describe('addon: peerCredentials (SO_PEERCRED)', function () {
  this.timeout(20_000);
  let dir: string;
  let server: Server;
  let path: string;
  let accepted: ((s: Socket) => void)[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'peercred-'));
    path = join(dir, 's');
    server = createServer((s) => (accepted.shift() ?? ((x: Socket) => x.destroy()))(s));
    await new Promise<void>((r) => server.listen(path, r));
    // Reachable by the clients run as nobody.
    chmodSync(dir, 0o711);
    chmodSync(path, 0o666);
  });
  after(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  /** The credentials of the next accepted connection, made by `client` (a command line, or this process). */
  async function credsOf(client?: string[]): Promise<{ creds: PeerCredentials; printed?: number }> {
    let take!: (s: Socket) => void;
    const next = new Promise<Socket>((r) => accepted.push((take = r)));
    let printed: Promise<number> | undefined;
    let mine: Socket | undefined;
    let child: ReturnType<typeof spawn> | undefined;
    if (client === undefined) {
      mine = connect(path);
    } else {
      child = spawn(client[0]!, [...client.slice(1), '/usr/bin/python3', '-c', CLIENT, path], { stdio: ['ignore', 'pipe', 'inherit'] });
      printed = new Promise((resolve, reject) => {
        child!.stdout!.setEncoding('utf8').once('data', (d: string) => resolve(Number(d.trim())));
        child!.once('exit', (code) => reject(new Error(`client exited ${code} before connecting`)));
      });
    }
    let s: Socket | undefined;
    try {
      s = await Promise.race([next, ...(printed ? [printed.then(() => next)] : [])]);
      return { creds: peerCredentials(fdOf(s)), printed: printed && (await printed) };
    } finally {
      accepted = accepted.filter((r) => r !== take);
      s?.destroy();
      mine?.destroy();
      if (child) await new Promise((r) => (child!.exitCode !== null ? r(null) : child!.once('exit', r)));
    }
  }

  it('a connection from this process: our pid, uid and gid', async () => {
    const { creds } = await credsOf();
    assert.deepEqual(creds, { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
  });

  it('a listening socket answers with its creator (the kernel sets it at listen())', () => {
    assert.equal(peerCredentials(fdOf(server)).uid, process.getuid!());
  });

  it('a client run as nobody: uid and gid 65534, its pid', async function () {
    if (!isRoot()) this.skip();
    const { creds, printed } = await credsOf(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']);
    assert.equal(creds.uid, 65534);
    assert.equal(creds.gid, 65534);
    assert.ok(creds.pid > 1, `pid ${creds.pid}`);
    assert.equal(printed, creds.pid);
  });

  it('a client in a PID namespace of its own: its pid as we see it (it calls itself 1), uid 0', async function () {
    if (!isRoot()) this.skip();
    const { creds, printed } = await credsOf(['unshare', '--pid', '--fork', '--']);
    assert.equal(printed, 1);
    assert.ok(creds.pid > 1, `pid ${creds.pid}`);
    assert.equal(creds.uid, 0);
  });

  it('nobody as "root" of its own user namespace is still nobody to us', async function () {
    if (!isRoot()) this.skip();
    const { creds } = await credsOf(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'unshare', '--user', '--map-root-user', '--']);
    assert.equal(creds.uid, 65534);
  });

  it('bad fds are explicit errors: not an integer, closed, not a socket, not a unix socket', async () => {
    assert.throws(() => peerCredentials(-1), TypeError);
    assert.throws(() => peerCredentials(1.5), TypeError);
    assert.throws(() => (peerCredentials as (x: unknown) => unknown)('3'), TypeError);
    assert.throws(() => (peerCredentials as () => unknown)(), TypeError);
    const f = openSync(__filename, 'r');
    try {
      assert.throws(() => peerCredentials(f), { code: 'ENOTSOCK' });
    } finally {
      closeSync(f);
    }
    assert.throws(() => peerCredentials(f), { code: 'EBADF', message: /SO_PEERCRED of fd \d+: EBADF/ });
    const tcp = createServer();
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
    try {
      assert.throws(() => peerCredentials(fdOf(tcp)), { code: 'EAFNOSUPPORT', message: /not AF_UNIX/ });
    } finally {
      tcp.close();
    }
  });
});
