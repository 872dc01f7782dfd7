// Against the real rpcbind, started inside the test namespace (scripts/mocha-ns.sh gives it a
// private /run, so its /run/rpcbind.sock is ours alone).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { getPort, portOfUniversalAddress, registerWithRpcbind, RpcError, RpcServer } from '../../src/rpc';
import { hasCommand, requireNamespaceRoot, sh, testInterface, startRpcbind } from '../support/netns';
import { TEST_PROG, testProgram } from './support';

/** rpcinfo -p rows for a program: "vers proto port". */
const rpcinfoRows = (prog: number): string[] =>
  sh('rpcinfo', ['-p', '127.0.0.1'])
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[0] === String(prog))
    .map((f) => f.slice(1, 4).join(' '))
    .sort();

const execFileAsync = promisify(execFile);

describe('rpcbind registration and GETPORT against the real rpcbind', function () {
  this.timeout(30_000);
  const A = '10.77.4.1';
  let iface: { dispose(): void } | undefined;
  let stop: (() => Promise<void>) | undefined;
  let server: RpcServer;

  before(async function () {
    requireNamespaceRoot(this);
    if (!hasCommand('rpcbind') || !hasCommand('rpcinfo')) this.skip();
    iface = testInterface([A]);
    stop = await startRpcbind();
    server = new RpcServer();
    server.register(testProgram(1));
    server.register(testProgram(2));
    await server.addAddress(A);
  });
  after(async () => {
    await server?.close();
    await stop?.();
    iface?.dispose();
  });

  const entries = () => [
    { prog: TEST_PROG, vers: 1, protocol: 'udp' as const, port: server.port },
    { prog: TEST_PROG, vers: 1, protocol: 'tcp' as const, port: server.port },
    { prog: TEST_PROG, vers: 2, protocol: 'udp' as const, port: server.port },
  ];

  for (const via of ['unix', 'udp'] as const) {
    it(`registers over ${via === 'unix' ? 'the rpcbind socket (v4 SET)' : 'portmapper v2 on UDP'}: rpcinfo -p shows it, GETPORT finds it, unregister removes it`, async () => {
      const reg = await registerWithRpcbind(entries(), { mode: 'auto', ...(via === 'udp' ? { socketPath: '/nonexistent/rpcbind.sock' } : {}) });
      assert.equal(reg.reason, undefined);
      assert.equal(reg.registered, true);
      assert.equal(reg.via, via);
      const p = server.port;
      assert.deepEqual(rpcinfoRows(TEST_PROG), [`1 tcp ${p}`, `1 udp ${p}`, `2 udp ${p}`]);
      assert.equal(await getPort('127.0.0.1', TEST_PROG, 1, 'udp'), p);
      assert.equal(await getPort('127.0.0.1', TEST_PROG, 1, 'tcp', { transport: 'tcp' }), p);
      assert.equal(await getPort(A, TEST_PROG, 2, 'udp', { source: A }), p);
      assert.equal(await getPort('127.0.0.1', TEST_PROG + 5, 1, 'udp'), 0, 'not registered: 0');
      // rpcbind answers another version's port when the asked one is missing (the service then says PROG_MISMATCH).
      assert.equal(await getPort('127.0.0.1', TEST_PROG, 3, 'udp'), p);
      await reg.unregister();
      assert.deepEqual(rpcinfoRows(TEST_PROG), []);
      assert.equal(await getPort('127.0.0.1', TEST_PROG, 1, 'udp'), 0);
    });
  }

  it('reads the port of universal addresses, IPv4 and IPv6, and refuses garbage', () => {
    assert.equal(portOfUniversalAddress('10.0.0.5.15.205'), 4045);
    assert.equal(portOfUniversalAddress('::1.0.111'), 111);
    assert.equal(portOfUniversalAddress(''), 0);
    for (const bad of ['10.0.0.5', '::1.300.1', 'garbage']) assert.throws(() => portOfUniversalAddress(bad), RpcError);
  });

  it('over the socket, registers as superuser and can add udp6/tcp6', async () => {
    const reg = await registerWithRpcbind(entries(), { mode: 'auto', ipv6: true });
    assert.equal(reg.registered, true);
    // rpcinfo's v3/v4 dump: program version netid address service owner
    const rows = sh('rpcinfo', ['127.0.0.1']).split('\n').map((l) => l.trim().split(/\s+/)).filter((f) => f[0] === String(TEST_PROG));
    const p = server.port;
    assert.deepEqual(rows.map((f) => `${f[1]} ${f[2]} ${f[3]}`).sort(), [
      `1 tcp 0.0.0.0.${p >> 8}.${p & 255}`, `1 tcp6 ::.${p >> 8}.${p & 255}`, `1 udp 0.0.0.0.${p >> 8}.${p & 255}`, `1 udp6 ::.${p >> 8}.${p & 255}`,
      `2 udp 0.0.0.0.${p >> 8}.${p & 255}`, `2 udp6 ::.${p >> 8}.${p & 255}`,
    ]);
    assert.ok(rows.every((f) => f[5] === 'superuser'), rows.map((f) => f.join(' ')).join('\n'));
    // An IPv6 peer is asked with rpcbind v4 GETADDR for udp6/tcp6: portmapper v2 knows only IPv4.
    assert.equal(await getPort('::1', TEST_PROG, 1, 'udp'), p);
    assert.equal(await getPort('::1', TEST_PROG, 1, 'tcp', { transport: 'tcp' }), p);
    assert.equal(await getPort('::1', TEST_PROG + 5, 1, 'udp'), 0, 'not registered: 0');
    await reg.unregister();
    assert.ok(!sh('rpcinfo', ['127.0.0.1']).includes(String(TEST_PROG)));
  });

  it('rpcinfo (libtirpc) finds the server through rpcbind and calls it over UDP and TCP, probing versions', async () => {
    // Asynchronously: our server answers from this very process.
    const rpcinfo = async (...args: string[]): Promise<string> => {
      try {
        return (await execFileAsync('rpcinfo', args)).stdout;
      } catch (e) {
        return `failed: ${(e as { stdout?: string; stderr?: string }).stdout ?? ''}${(e as { stderr?: string }).stderr ?? ''}`;
      }
    };
    const reg = await registerWithRpcbind(entries(), { mode: 'auto' });
    try {
      for (const t of ['-u', '-t']) assert.match(await rpcinfo(t, A, String(TEST_PROG), '1'), /program \d+ version 1 ready and waiting/);
      // Without a version, rpcinfo calls version 0 and walks the range PROG_MISMATCH gave it.
      const probe = await rpcinfo('-u', A, String(TEST_PROG));
      assert.match(probe, /version 1 ready and waiting/);
      assert.match(probe, /version 2 ready and waiting/);
      assert.match(await rpcinfo('-t', A, String(TEST_PROG), '5'), /Program\/version mismatch; low version = 1, high version = 2/);
    } finally {
      await reg.unregister();
    }
  });

  it('replaces a stale registration left by an earlier run', async () => {
    const stale = await registerWithRpcbind([{ prog: TEST_PROG, vers: 1, protocol: 'udp', port: 1 }], { mode: 'auto' });
    assert.equal(stale.registered, true);
    const reg = await registerWithRpcbind(entries(), { mode: 'auto' });
    assert.equal(reg.registered, true);
    assert.equal(await getPort('127.0.0.1', TEST_PROG, 1, 'udp'), server.port);
    await reg.unregister();
  });

  it('mode off registers nothing', async () => {
    const reg = await registerWithRpcbind(entries(), { mode: 'off' });
    assert.equal(reg.registered, false);
    assert.match(reg.reason!, /off/);
    assert.deepEqual(rpcinfoRows(TEST_PROG), []);
    await reg.unregister();
  });

  it('auto without any rpcbind says so instead of failing', async () => {
    await stop!();
    const started = Date.now();
    const reg = await registerWithRpcbind(entries(), { mode: 'auto', timeoutMs: 1000 });
    assert.equal(reg.registered, false);
    assert.match(reg.reason!, /no rpcbind answered at 127\.0\.0\.1:111/);
    assert.ok(Date.now() - started < 1500);
    await reg.unregister();
  });
});
