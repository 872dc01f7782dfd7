// What the RPC server owes each local address: a client of one address is not served behind a
// storm of calls through another (a failover's reclaims on the address that just arrived), over
// TCP and UDP, while every storm call is still answered, each connection's replies in call order.
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { encodeCall, encodeRecord, NULL_AUTH, RecordDecoder, RpcServer, type RpcServerOptions } from '../../src/rpc';
import type { XdrReader } from '../../src/xdr';
import { requireNamespaceRoot, testInterface } from '../support/netns';
import { waitFor } from '../support/wait';
import { rawTcp, TEST_PROG, testProgram } from './support';

const STORM = '10.77.5.1';
const QUIET = '10.77.5.2';
const MARK = 6; // notes its argument in `order` and works 40 µs, as a reclaim on b does (bench/failover-scale.ts)
const LATER = 7; // MARK, answered a turn later (an asynchronous handler)
const PROBE_TAG = 1;

const call = (xid: number, proc: number, tag: number): Buffer => {
  const arg = Buffer.alloc(4);
  arg.writeUInt32BE(tag);
  return encodeCall({ xid, prog: TEST_PROG, vers: 1, proc, cred: NULL_AUTH, verf: NULL_AUTH }, arg);
};
const xids = (b: Buffer): number[] => new RecordDecoder(1 << 20).push(b).map((r) => r.readUInt32BE(0));
const work = (): void => {
  const t = performance.now();
  while (performance.now() - t < 0.04);
};

describe('rpc server, per local address', function () {
  this.timeout(30_000);
  let iface: { dispose(): void } | undefined;
  let server: RpcServer | undefined;
  let order: number[] = [];
  let onMark: () => void = () => undefined;
  let opened = 0;

  const start = async (o: RpcServerOptions): Promise<number> => {
    await server?.close();
    order = [];
    opened = 0;
    const onEvent: RpcServerOptions['onEvent'] = (e) => void (e.kind === 'connection' && e.state === 'open' && opened++);
    server = new RpcServer({ maxConnections: 4096, maxConnectionsPerPeer: 4096, maxUdpCallsInProgress: 4096, onEvent, ...o });
    const mark = (tag: number): void => {
      order.push(tag);
      work();
      onMark();
    };
    server.register(testProgram(1, [
      [MARK, { name: 'MARK', idempotent: true, decodeArgs: (r: XdrReader) => r.uint(), encodeResult: () => undefined, handle: mark }],
      [LATER, {
        name: 'LATER', idempotent: true, decodeArgs: (r: XdrReader) => r.uint(), encodeResult: () => undefined,
        handle: (tag: number) => new Promise<void>((resolve) => setImmediate(() => resolve(mark(tag)))),
      }],
    ]));
    await server.addAddress(STORM);
    await server.addAddress(QUIET);
    return server.port;
  };

  before(function () {
    requireNamespaceRoot(this);
    iface = testInterface([STORM, QUIET]);
  });
  afterEach(() => {
    onMark = () => undefined;
  });
  after(async () => {
    await server?.close();
    iface?.dispose();
  });

  /**
   * 500 connections to STORM send 4 calls each (every third answered asynchronously) in one go;
   * when the storm's first call runs, a client of QUIET sends one. Returns how many storm calls
   * ran before it, and how many storm replies had arrived when its reply did.
   */
  const tcpStorm = async (o: RpcServerOptions): Promise<{ before: number; repliesBefore: number }> => {
    const port = await start(o);
    const conns = await Promise.all(Array.from({ length: 500 }, () => rawTcp(STORM, port)));
    const probe = await rawTcp(QUIET, port);
    // Every connection accepted and reading before the storm, so that all of it is read in one turn.
    await waitFor('501 connections open', () => opened === 501);
    await new Promise((r) => setImmediate(r));
    let repliesBefore = -1;
    probe.socket.on('data', () => {
      repliesBefore = conns.reduce((n, c) => n + xids(c.received()).length, 0);
    });
    onMark = () => {
      if (order.length === 1) probe.socket.write(encodeRecord(call(1, MARK, PROBE_TAG)));
    };
    conns.forEach((c, i) => c.socket.write(Buffer.concat([1, 2, 3, 4].map((n) => encodeRecord(call(i * 4 + n, n === 3 ? LATER : MARK, 0))))));
    await waitFor('every reply', () => xids(probe.received()).length === 1 && conns.every((c) => xids(c.received()).length === 4), 20_000);
    conns.forEach((c, i) => assert.deepEqual(xids(c.received()), [1, 2, 3, 4].map((n) => i * 4 + n), `connection ${i}'s replies in call order`));
    assert.equal(order.length, 2001);
    for (const c of [...conns, probe]) c.socket.destroy();
    return { before: order.indexOf(PROBE_TAG), repliesBefore };
  };

  it('over tcp, a call to one address is served before most of a 2,000-call storm on another', async () => {
    const fair = await tcpStorm({});
    assert.ok(fair.before > 0 && fair.before < 200, `the quiet address's call ran after ${fair.before} of the storm's 2,000`);
    assert.ok(fair.repliesBefore >= 0 && fair.repliesBefore < 1000, `its reply came after ${fair.repliesBefore} of the storm's`);
    // The control: with every call run as read, it waits behind the storm's reads.
    const unfair = await tcpStorm({ addressCallsPerTurn: Infinity });
    assert.ok(unfair.before > 1000, `with every call run as read, it still ran after only ${unfair.before}`);
  });

  /** 50 UDP sockets send 20 calls each to STORM; as the first runs, another sends one to QUIET. */
  const udpStorm = async (o: RpcServerOptions): Promise<number> => {
    const port = await start(o);
    const open = (): Promise<{ s: dgram.Socket; got: number[] }> => new Promise((resolve) => {
      const s = dgram.createSocket('udp4');
      const got: number[] = [];
      s.on('message', (m) => got.push(m.readUInt32BE(0)));
      s.bind(0, () => resolve({ s, got }));
    });
    const socks = await Promise.all(Array.from({ length: 50 }, open));
    const probe = await open();
    onMark = () => {
      if (order.length === 1) probe.s.send(call(1, MARK, PROBE_TAG), port, QUIET);
    };
    socks.forEach(({ s }, i) => {
      for (let n = 1; n <= 20; n++) s.send(call(i * 20 + n, MARK, 0), port, STORM);
    });
    await waitFor('every reply', () => probe.got.length === 1 && socks.every((x) => x.got.length === 20), 20_000);
    // One socket's datagrams are answered in the order sent (none lost, none twice).
    socks.forEach((x, i) => assert.deepEqual(x.got, Array.from({ length: 20 }, (_, n) => i * 20 + n + 1)));
    for (const { s } of [...socks, probe]) s.close();
    return order.indexOf(PROBE_TAG);
  };

  it('over udp, a call to one address is served before most of a 1,000-call storm on another', async () => {
    // Libuv reads up to 32 datagrams of a socket in a turn: run as read, that many at least go first.
    const unfair = await udpStorm({ addressCallsPerTurn: Infinity });
    assert.ok(unfair >= 32, `with every call run as read, it ran after only ${unfair}`);
    const fair = await udpStorm({});
    assert.ok(fair > 0 && fair < 32, `the quiet address's call ran after ${fair} of the storm's 1,000`);
  });

  it('datagrams waiting on a removed address leave the count of calls in progress', async () => {
    const port = await start({ maxUdpCallsInProgress: 64, addressCallsPerTurn: 1 });
    const s = dgram.createSocket('udp4');
    const got: number[] = [];
    s.on('message', (m) => got.push(m.readUInt32BE(0)));
    await new Promise<void>((r) => s.bind(0, () => r()));
    // The first runs as read, the rest of the read wait in the lane; the address goes in the turn's
    // check phase, after the lanes' first slice, before the rest's round.
    onMark = () => {
      if (order.length === 1) setImmediate(() => void server!.removeAddress(STORM));
    };
    for (let n = 1; n <= 60; n++) s.send(call(n, MARK, 0), port, STORM);
    await waitFor('the address removed', () => !server!.addresses().includes(STORM));
    onMark = () => undefined;
    // Had those waiting stayed counted, some of these 64 (63 of them wait their round) would be dropped.
    for (let n = 1; n <= 64; n++) s.send(call(1000 + n, MARK, 0), port, QUIET);
    await waitFor('64 replies from the other address', () => got.filter((x) => x > 1000).length === 64);
    s.close();
  });
});
