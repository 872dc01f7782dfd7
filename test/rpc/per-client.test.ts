// What the RPC server keeps per client and owes each: a credential parsed once per TCP connection
// or UDP peer (never another's), a turn for every connection when one floods it, room for many
// UDP clients' calls.
import assert from 'node:assert/strict';
import { AUTH_SYS, encodeCall, encodeRecord, NULL_AUTH, RecordDecoder, RpcClient, RpcServer, type CallContext, type Credential, type RpcServerOptions } from '../../src/rpc';
import type { XdrReader, XdrWriter } from '../../src/xdr';
import { requireNamespaceRoot, sh, testInterface } from '../support/netns';
import { waitFor } from '../support/wait';
import { rawTcp, TEST_PROG, testProgram } from './support';

const A = '10.77.4.1';
const WHO = 5; // the caller's machine name and uid as the handler sees them
const MARK = 6; // notes its argument in `order`

const cred = (machineName: string, uid: number): Credential => ({ flavor: AUTH_SYS, stamp: 1, machineName, uid, gid: 0, gids: [3] });

describe('rpc server, per client', function () {
  let iface: { dispose(): void } | undefined;
  let server: RpcServer | undefined;
  const clients: RpcClient[] = [];
  let order: number[] = [];
  let onMark: (tag: number) => void = () => undefined;

  const start = async (o: RpcServerOptions = {}): Promise<number> => {
    await server?.close();
    server = new RpcServer(o);
    server.register(testProgram(1, [
      [WHO, {
        name: 'WHO', decodeArgs: () => undefined, idempotent: true,
        encodeResult: (w: XdrWriter, c: CallContext) => void w.string(c.cred.flavor === AUTH_SYS && 'machineName' in c.cred ? `${c.cred.machineName} ${c.cred.uid}` : `flavor ${c.cred.flavor}`),
        handle: (_: unknown, c: CallContext) => c,
      }],
      [MARK, {
        name: 'MARK', idempotent: true, decodeArgs: (r: XdrReader) => r.uint(), encodeResult: () => undefined,
        handle: (tag: number) => {
          order.push(tag);
          onMark(tag);
        },
      }],
    ]));
    await server.addAddress(A);
    return server.port;
  };
  const client = (transport: 'udp' | 'tcp', port: number, c: Credential): RpcClient => {
    const x = new RpcClient({ transport, host: A, port, cred: c });
    clients.push(x);
    return x;
  };
  const who = (c: RpcClient, as?: Credential): Promise<string> => c.call(TEST_PROG, 1, WHO, undefined, (r) => r.string(), as ? { cred: as } : {});

  before(function () {
    requireNamespaceRoot(this);
    iface = testInterface([A]);
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    order = [];
    onMark = () => undefined;
  });
  after(async () => {
    await server?.close();
    iface?.dispose();
  });

  for (const transport of ['tcp', 'udp'] as const) {
    it(`over ${transport}, every client sees its own credential, and a changed one is parsed again`, async () => {
      const port = await start();
      const one = client(transport, port, cred('one', 1));
      const two = client(transport, port, cred('two', 2));
      for (let i = 0; i < 3; i++) {
        assert.equal(await who(one), 'one 1');
        assert.equal(await who(two), 'two 2');
      }
      // The same client (connection, or UDP socket) with other credentials call by call.
      assert.equal(await who(one, cred('one', 100)), 'one 100');
      assert.equal(await who(one, cred('uno', 100)), 'uno 100');
      assert.equal(await who(one), 'one 1');
      assert.equal(await who(two), 'two 2');
    });
  }

  it('a connection that sends a burst gives the others a turn every callsPerTurn calls', async () => {
    const burst = Buffer.concat(Array.from({ length: 2000 }, (_, i) => encodeRecord(encodeCall({ xid: i + 1, prog: TEST_PROG, vers: 1, proc: MARK, cred: NULL_AUTH, verf: NULL_AUTH }, Buffer.from([0, 0, 0, 0])))));
    const single = encodeRecord(encodeCall({ xid: 9, prog: TEST_PROG, vers: 1, proc: MARK, cred: NULL_AUTH, verf: NULL_AUTH }, Buffer.from([0, 0, 0, 1])));
    const replies = (b: Buffer): number => new RecordDecoder(1 << 20).push(b).length;
    // Where the other connection's call ran among the burst's: it is sent once the burst's first call runs.
    const positionOfOther = async (o: RpcServerOptions): Promise<number> => {
      const port = await start(o);
      order = [];
      const storm = await rawTcp(A, port);
      const other = await rawTcp(A, port);
      onMark = (tag) => {
        if (tag === 0 && order.length === 1) other.socket.write(single);
      };
      storm.socket.write(burst);
      await waitFor('every reply', () => replies(storm.received()) === 2000 && replies(other.received()) === 1, 10_000);
      // Turns split the burst's calls, never reorder their replies.
      assert.deepEqual(new RecordDecoder(1 << 20).push(storm.received()).map((r) => r.readUInt32BE(0)), Array.from({ length: 2000 }, (_, i) => i + 1));
      storm.socket.destroy();
      other.socket.destroy();
      return order.indexOf(1);
    };
    // One round of the address's lane per turn (no slice of time): the first 8 calls run as read, then
    // 32 per round, and the other connection's call has its round within the next few.
    const bounded = await positionOfOther({ callsPerTurn: 32, addressCallsPerTurn: 8, laneSliceMs: 0 });
    assert.ok(bounded > 0 && bounded <= 8 + 3 * 32, `the other connection's call ran after ${bounded} of the burst's`);
    // Without the bounds it waits behind all the burst's first read (64 KiB: over 1,000 calls).
    const unbounded = await positionOfOther({ callsPerTurn: 1_000_000, addressCallsPerTurn: Infinity });
    assert.ok(unbounded > 500, `without the bound the other connection's call ran after only ${unbounded}`);
  });

  it('asks for a 4 MiB UDP receive buffer (the kernel doubles it, capped at rmem_max)', async () => {
    const port = await start();
    const rmemMax = Number(sh('cat', ['/proc/sys/net/core/rmem_max']));
    const line = sh('ss', ['-H', '-u', '-a', '-m', '-n', 'src', `${A}:${port}`]);
    const rb = Number(/rb(\d+)/.exec(line)?.[1]);
    assert.equal(rb, 2 * Math.min(4 << 20, rmemMax), line);
  });
});
