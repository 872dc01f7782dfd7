// The RPC client pool (GRANTED and *_RES callbacks): a TCP connection from an address that left
// this node closes when told (closeFrom), and an idle one closes after idleMs; a client with a
// call in flight is not idle. Real sockets: an RpcServer sees the connections open and close.
import assert from 'node:assert/strict';
import { RpcClientPool, RpcServer, type RpcServerEvent } from '../../src/rpc';
import { requireNamespaceRoot, testInterface } from '../support/netns';
import { waitFor } from '../support/wait';
import { TEST_PROG, testProgram } from './support';

describe('rpc client pool', function () {
  const A = '10.77.4.1';
  const B = '10.77.4.2';
  let iface: { dispose(): void } | undefined;
  let server: RpcServer | undefined;
  /** Open connections the server has, by the peer's address. */
  const open = new Map<string, number>();

  before(async function () {
    requireNamespaceRoot(this);
    iface = testInterface([A, B]);
    server = new RpcServer({
      onEvent: (e: RpcServerEvent) => {
        if (e.kind !== 'connection' || e.state === 'refused') return;
        open.set(e.peer.address, (open.get(e.peer.address) ?? 0) + (e.state === 'open' ? 1 : -1));
      },
    });
    server.register(testProgram(1));
    server.listen({ port: 0 });
    await server.addAddress(A);
  });
  after(async () => {
    await server?.close();
    iface?.dispose();
  });

  const call = (pool: RpcClientPool, source: string) =>
    pool.call({ address: A, port: server!.port, source, transport: 'tcp', prog: TEST_PROG, vers: 1, proc: 0, args: Buffer.alloc(0), timeoutMs: 2_000 });

  it('closeFrom closes the connections from that source only; an idle one closes after idleMs', async () => {
    const pool = new RpcClientPool({ idleMs: 300 });
    try {
      await call(pool, A);
      await call(pool, B);
      await waitFor('both connections open', () => open.get(A) === 1 && open.get(B) === 1);
      assert.equal(pool.closeFrom(`::ffff:${B}`), 1, 'a mapped address names the same source');
      await waitFor("B's connection closed", () => open.get(B) === 0, 2_000);
      assert.equal(open.get(A), 1);
      // Used again within idleMs: kept; then idle: closed.
      await new Promise((resolve) => setTimeout(resolve, 200));
      await call(pool, A);
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(open.get(A), 1, 'used 200 ms ago: still open');
      await waitFor("A's idle connection closed", () => open.get(A) === 0, 2_000);
      assert.equal(pool.size, 0);
      await call(pool, A);
      await waitFor('a new connection for a new call', () => open.get(A) === 1);
    } finally {
      pool.close();
    }
    await waitFor('closed with the pool', () => open.get(A) === 0, 2_000);
  });
});
