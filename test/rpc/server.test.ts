import assert from 'node:assert/strict';
import { RpcClient, RpcServer, RpcReplyError, AUTH_SYS } from '../../src/rpc';
import { requireNamespaceRoot, testInterface } from '../support/netns';
import { TEST_PROG, testProgram } from './support';

describe('rpc server on two addresses', function () {
  const A = '10.77.1.1';
  const B = '10.77.1.2';
  let iface: { dispose(): void } | undefined;
  let server: RpcServer;
  const clients: RpcClient[] = [];
  const client = (o: ConstructorParameters<typeof RpcClient>[0]): RpcClient => {
    const c = new RpcClient(o);
    clients.push(c);
    return c;
  };

  before(async function () {
    requireNamespaceRoot(this);
    iface = testInterface([A, B]);
    server = new RpcServer();
    server.register(testProgram(1));
    server.register(testProgram(3));
    server.listen({ port: 0 });
    await server.addAddress(A);
    await server.addAddress(B);
  });
  after(async () => {
    for (const c of clients) c.close();
    await server?.close();
    iface?.dispose();
  });

  it('binds both addresses on one port', () => {
    assert.deepEqual(server.addresses().sort(), [A, B]);
    assert.ok(server.port > 0);
  });

  for (const transport of ['udp', 'tcp'] as const) {
    it(`answers NULL over ${transport} on each address, the handler seeing that address`, async () => {
      for (const address of [A, B]) {
        const c = client({ transport, host: address, port: server.port });
        await c.call(TEST_PROG, 1, 0);
        const where = await c.call(TEST_PROG, 1, 2, undefined, (r) => r.string());
        assert.equal(where, `${transport} ${address}:${server.port} 127.0.0.1 0`.replace('127.0.0.1', address));
      }
    });
  }

  it('passes AUTH_SYS credentials and a chosen source address', async () => {
    const c = client({ transport: 'udp', host: `::ffff:${A}`, port: server.port, source: `::ffff:${B}`, cred: { flavor: AUTH_SYS, stamp: 1, machineName: 'h', uid: 0, gid: 0, gids: [1, 2] } });
    const where = await c.call(TEST_PROG, 1, 2, undefined, (r) => r.string());
    assert.equal(where, `udp ${A}:${server.port} ${B} 1`);
  });

  it('reports PROG_MISMATCH with the registered range, PROC_UNAVAIL, PROG_UNAVAIL, SYSTEM_ERR', async () => {
    const c = client({ transport: 'tcp', host: A, port: server.port });
    const stat = (p: Promise<unknown>) => p.then(() => 'SUCCESS', (e) => (e instanceof RpcReplyError ? e.reply : e));
    assert.deepEqual(await stat(c.call(TEST_PROG, 2, 0)), { stat: 'PROG_MISMATCH', low: 1, high: 3 });
    assert.deepEqual(await stat(c.call(TEST_PROG, 1, 99)), { stat: 'PROC_UNAVAIL' });
    assert.deepEqual(await stat(c.call(TEST_PROG + 1, 1, 0)), { stat: 'PROG_UNAVAIL' });
    assert.deepEqual(await stat(c.call(TEST_PROG, 1, 3)), { stat: 'SYSTEM_ERR' });
  });

  it('serves IPv6 addresses too', async function () {
    const V6 = 'fd77::1';
    let v6iface: { dispose(): void };
    try {
      v6iface = testInterface([V6]);
    } catch {
      this.skip();
    }
    try {
      await server.addAddress(V6);
      for (const transport of ['udp', 'tcp'] as const) {
        const c = client({ transport, host: V6, port: server.port });
        assert.equal(await c.call(TEST_PROG, 1, 2, undefined, (r) => r.string()), `${transport} ${V6}:${server.port} ${V6} 0`);
      }
      await server.removeAddress(V6);
    } finally {
      v6iface!.dispose();
    }
  });
});
