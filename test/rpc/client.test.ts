import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { XdrWriter } from '../../src/xdr';
import {
  decodeCall, encodeErrorReply, encodeRecord, encodeSuccessReply, RecordDecoder, RpcClient, RpcConnectionError, RpcReplyError,
  RpcServer, RpcTimeoutError,
} from '../../src/rpc';
import { requireNamespaceRoot, testInterface } from '../support/netns';
import { waitFor } from '../support/wait';
import { rawTcp, sleep, TEST_PROG, testProgram } from './support';

/** A hand-driven UDP peer: records the calls it receives and answers as the test says. */
async function udpPeer(host: string, answer: (msg: Buffer, n: number, reply: (b: Buffer) => void) => void): Promise<{ port: number; times: number[]; close(): void }> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, host, () => r()));
  const times: number[] = [];
  s.on('message', (m, rinfo) => {
    times.push(Date.now());
    answer(m, times.length, (b) => s.send(b, rinfo.port, rinfo.address));
  });
  return { port: s.address().port, times, close: () => s.close() };
}

describe('rpc client', function () {
  const A = '10.77.3.1';
  const B = '10.77.3.2';
  let iface: { dispose(): void } | undefined;

  before(function () {
    requireNamespaceRoot(this);
    iface = testInterface([A, B]);
  });
  after(() => iface?.dispose());

  it('UDP: retransmits with exponential backoff until answered', async () => {
    const peer = await udpPeer(A, (m, n, reply) => {
      if (n === 4) reply(encodeSuccessReply(decodeCall(m).xid, new XdrWriter().uint(42).toBuffer()));
    });
    const c = new RpcClient({ transport: 'udp', host: A, port: peer.port, retransmitMs: 40, timeoutMs: 3000 });
    try {
      assert.equal(await c.call(TEST_PROG, 1, 1, undefined, (r) => r.uint()), 42);
      const gaps = peer.times.slice(1).map((t, i) => t - peer.times[i]!);
      assert.equal(gaps.length, 3);
      // 40 ms exactly, then 80 and 160 ms each jittered by up to ±20 %.
      assert.ok(gaps[0]! >= 20 && gaps[1]! >= 50 && gaps[2]! >= 105, `gaps ${gaps}`);
    } finally {
      c.close();
      peer.close();
    }
  });

  it('UDP: times out with RpcTimeoutError, and ignores stray and garbage replies', async () => {
    const peer = await udpPeer(A, (m, _n, reply) => {
      const xid = decodeCall(m).xid;
      reply(encodeSuccessReply(xid + 1)); // another call's reply
      reply(Buffer.from('garbage!'));
      reply(m); // our own call echoed back: not a reply
    });
    const c = new RpcClient({ transport: 'udp', host: A, port: peer.port, retransmitMs: 50 });
    try {
      const started = Date.now();
      await assert.rejects(c.call(TEST_PROG, 1, 0, undefined, undefined, { timeoutMs: 400 }), RpcTimeoutError);
      assert.ok(Date.now() - started >= 390);
    } finally {
      c.close();
      peer.close();
    }
  });

  it('UDP: no retransmission at the timeout (a datagram there could only meet a port closed meanwhile)', async () => {
    const peer = await udpPeer(A, () => undefined);
    const c = new RpcClient({ transport: 'udp', host: A, port: peer.port, retransmitMs: 1000, timeoutMs: 30 });
    try {
      // Timers run on the monotonic clock, the deadline on Date.now(): a timer armed for the
      // deadline may fire a millisecond before it by Date.now(). Many calls meet that edge.
      for (let round = 0; round < 5; round++) {
        await Promise.all(Array.from({ length: 40 }, () => assert.rejects(c.call(TEST_PROG, 1, 0), RpcTimeoutError)));
      }
      await sleep(50);
      assert.equal(peer.times.length, 200, 'one datagram per call');
    } finally {
      c.close();
      peer.close();
    }
  });

  it('UDP: reports a port nobody listens on as RpcConnectionError ECONNREFUSED, not a timeout', async () => {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, A, () => r()));
    const port = s.address().port;
    s.close();
    const c = new RpcClient({ transport: 'udp', host: A, port, timeoutMs: 3000 });
    try {
      await assert.rejects(c.call(TEST_PROG, 1, 0), (e: RpcConnectionError) => e instanceof RpcConnectionError && e.code === 'ECONNREFUSED');
    } finally {
      c.close();
    }
  });

  it('TCP: matches concurrent replies by xid even when they come back out of order', async () => {
    const srv = net.createServer((sock) => {
      const d = new RecordDecoder(1 << 16);
      const held: Buffer[] = [];
      sock.on('data', (chunk) => {
        for (const rec of d.push(chunk)) {
          const { xid, proc } = decodeCall(rec);
          held.push(encodeRecord(encodeSuccessReply(xid, new XdrWriter().uint(proc).toBuffer())));
          if (held.length === 5) for (const r of held.reverse()) sock.write(r);
        }
      });
    });
    await new Promise<void>((r) => srv.listen(0, A, () => r()));
    const c = new RpcClient({ transport: 'tcp', host: A, port: (srv.address() as net.AddressInfo).port });
    try {
      const got = await Promise.all([1, 2, 3, 4, 5].map((p) => c.call(TEST_PROG, 1, p, undefined, (r) => r.uint())));
      assert.deepEqual(got, [1, 2, 3, 4, 5]);
    } finally {
      c.close();
      srv.close();
    }
  });

  it('TCP: a dropped connection fails its calls with RpcConnectionError, and the next call reconnects', async () => {
    let accepted = 0;
    const srv = net.createServer((sock) => {
      accepted++;
      const d = new RecordDecoder(1 << 16);
      sock.on('data', (chunk) => {
        for (const rec of d.push(chunk)) {
          const { xid, proc } = decodeCall(rec);
          if (proc === 9) sock.destroy();
          else sock.write(encodeRecord(encodeSuccessReply(xid)));
        }
      });
    });
    await new Promise<void>((r) => srv.listen(0, A, () => r()));
    const c = new RpcClient({ transport: 'tcp', host: A, port: (srv.address() as net.AddressInfo).port, source: B });
    try {
      await c.call(TEST_PROG, 1, 0);
      await assert.rejects(c.call(TEST_PROG, 1, 9), RpcConnectionError);
      await c.call(TEST_PROG, 1, 0);
      assert.equal(accepted, 2);
    } finally {
      c.close();
      srv.close();
    }
  });

  it('TCP: refused connection is an RpcConnectionError with its errno', async () => {
    const c = new RpcClient({ transport: 'tcp', host: A, port: 1 });
    try {
      await assert.rejects(c.call(TEST_PROG, 1, 0), (e: RpcConnectionError) => e instanceof RpcConnectionError && e.code === 'ECONNREFUSED');
    } finally {
      c.close();
    }
  });

  it('a source address that is not local is an RpcConnectionError EADDRNOTAVAIL (UDP and TCP)', async () => {
    for (const transport of ['udp', 'tcp'] as const) {
      const c = new RpcClient({ transport, host: A, port: 9, source: '10.77.3.99' });
      try {
        await assert.rejects(c.call(TEST_PROG, 1, 0), (e: RpcConnectionError) => e instanceof RpcConnectionError && e.code === 'EADDRNOTAVAIL');
      } finally {
        c.close();
      }
    }
  });

  it('turns each non-SUCCESS reply into an RpcReplyError carrying it', async () => {
    const replies = [
      { stat: 'PROG_UNAVAIL' }, { stat: 'PROG_MISMATCH', low: 1, high: 4 }, { stat: 'PROC_UNAVAIL' }, { stat: 'GARBAGE_ARGS' },
      { stat: 'SYSTEM_ERR' }, { stat: 'RPC_MISMATCH', low: 2, high: 2 }, { stat: 'AUTH_ERROR', authStat: 5 },
    ] as const;
    const peer = await udpPeer(A, (m, _n, reply) => {
      const { xid, proc } = decodeCall(m);
      reply(encodeErrorReply(xid, replies[proc]!));
    });
    const c = new RpcClient({ transport: 'udp', host: A, port: peer.port });
    try {
      for (let i = 0; i < replies.length; i++) {
        await assert.rejects(c.call(TEST_PROG, 1, i), (e: RpcReplyError) => {
          assert.ok(e instanceof RpcReplyError);
          assert.deepEqual(e.reply, replies[i]);
          assert.equal(e.stat, replies[i]!.stat);
          return true;
        });
      }
    } finally {
      c.close();
      peer.close();
    }
  });

  it('send() delivers a one-way message from the chosen source without waiting for a reply', async () => {
    const server = new RpcServer();
    const program = testProgram(1);
    server.register(program);
    await server.addAddress(A);
    const seen: string[] = [];
    server.register({ prog: TEST_PROG + 1, vers: 1, procedures: new Map([[0, { name: 'MSG', decodeArgs: () => undefined, encodeResult: () => undefined, handle: (_: unknown, ctx: { peer: { address: string } }) => { seen.push(ctx.peer.address); return undefined; } }]]) });
    try {
      for (const [i, transport] of (['udp', 'tcp'] as const).entries()) {
        const c = new RpcClient({ transport, host: A, port: server.port, source: B });
        await c.send(TEST_PROG, 1, 4);
        await c.send(TEST_PROG + 1, 1, 0);
        await waitFor(`both ${transport} messages handled`, () => program.count > i && seen.length > i);
        c.close();
      }
      assert.equal(program.count, 2);
      assert.deepEqual(seen, [B, B]);
    } finally {
      await server.close();
    }
  });

  describe('server addresses', () => {
    it('removeAddress closes that address\'s TCP connections and sockets, not the other\'s; addAddress reuses the port', async () => {
      const server = new RpcServer();
      server.register(testProgram(1));
      server.listen({ port: 0 });
      await server.addAddress(A);
      await server.addAddress(`::ffff:${B}`);
      assert.deepEqual(server.addresses(), [A, B]);
      const port = server.port;
      const onA = await rawTcp(A, port);
      const onB = await rawTcp(B, port);
      const cA = new RpcClient({ transport: 'tcp', host: A, port });
      const cB = new RpcClient({ transport: 'tcp', host: B, port });
      try {
        await cA.call(TEST_PROG, 1, 0);
        await cB.call(TEST_PROG, 1, 0);
        await server.removeAddress(A);
        await onA.closed;
        assert.equal(onB.socket.destroyed, false);
        assert.deepEqual(server.addresses(), [B]);
        await cB.call(TEST_PROG, 1, 0); // B's connection survived
        await assert.rejects(cA.call(TEST_PROG, 1, 0), RpcConnectionError); // nobody listens on A any more
        const udpA = new RpcClient({ transport: 'udp', host: A, port, timeoutMs: 1000 });
        await assert.rejects(udpA.call(TEST_PROG, 1, 0), RpcConnectionError);
        udpA.close();
        await server.addAddress(A);
        assert.equal(server.port, port);
        await cA.call(TEST_PROG, 1, 0);
      } finally {
        cA.close();
        cB.close();
        onB.socket.destroy();
        await server.close();
      }
    });

    it('a call still running when its address is removed is dropped quietly (UDP and TCP)', async () => {
      const server = new RpcServer();
      let started = 0;
      server.register(testProgram(1, [[5, { name: 'SLOW', decodeArgs: () => undefined, encodeResult: () => undefined, handle: async () => { started++; await sleep(200); } }]]));
      await server.addAddress(A);
      const port = server.port;
      const clients = (['udp', 'tcp'] as const).map((transport) => new RpcClient({ transport, host: A, port, timeoutMs: 600, retransmitMs: 1000 }));
      try {
        const calls = clients.map((c) => c.call(TEST_PROG, 1, 5));
        await waitFor('both calls running', () => started === 2);
        await server.removeAddress(A);
        await assert.rejects(calls[0]!, RpcTimeoutError);
        await assert.rejects(calls[1]!, RpcConnectionError);
      } finally {
        for (const c of clients) c.close();
        await server.close();
      }
    });

    it('an address that is not local is refused with EADDRNOTAVAIL and leaves the server as it was', async () => {
      const server = new RpcServer();
      server.register(testProgram(1));
      try {
        await assert.rejects(server.addAddress('10.77.3.99'), /EADDRNOTAVAIL/);
        await server.addAddress(A);
        await assert.rejects(server.addAddress('10.77.3.98'), /EADDRNOTAVAIL/);
        assert.deepEqual(server.addresses(), [A]);
        const c = new RpcClient({ transport: 'udp', host: A, port: server.port });
        await c.call(TEST_PROG, 1, 0);
        c.close();
      } finally {
        await server.close();
      }
    });

    it('a fixed port is used on every address, and a taken one is an error for that address only', async () => {
      const blocker = net.createServer();
      await new Promise<void>((r) => blocker.listen(0, B, () => r()));
      const taken = (blocker.address() as net.AddressInfo).port;
      const server = new RpcServer();
      server.register(testProgram(1));
      server.listen({ port: taken });
      try {
        await server.addAddress(A);
        assert.equal(server.port, taken);
        await assert.rejects(server.addAddress(B), /EADDRINUSE/);
        assert.deepEqual(server.addresses(), [A]);
      } finally {
        blocker.close();
        await server.close();
      }
    });
  });
});
