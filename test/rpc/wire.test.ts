// Malformed and hostile input on the wire: each gets the correct RPC error or a closed
// connection, and the server keeps serving everyone else.
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import fc from 'fast-check';
import { XdrWriter } from '../../src/xdr';
import {
  AUTH_STAT, AUTH_SYS, decodeReply, NO_REPLY, RpcAcceptError, RpcAuthError, encodeCall, encodeRecord, NULL_AUTH, RecordDecoder, RpcClient, RpcDispatcher, RpcServer,
  type DecodedReply, type Procedure, type RpcServerEvent,
} from '../../src/rpc';
import { requireNamespaceRoot, testInterface } from '../support/netns';
import { waitFor } from '../support/wait';
import { rawTcp, sleep, TEST_PROG, testProgram, udpAnswers } from './support';

const call = (xid: number, prog: number, vers: number, proc: number, args: Buffer = Buffer.alloc(0)): Buffer =>
  encodeCall({ xid, prog, vers, proc, cred: NULL_AUTH, verf: NULL_AUTH }, args);

const stripVerf = (r: DecodedReply): Record<string, unknown> => {
  const { verf: _v, ...rest } = r as DecodedReply & { verf?: unknown };
  if ('resultsOffset' in rest) delete (rest as { resultsOffset?: number }).resultsOffset;
  return rest;
};

describe('rpc server against malformed input', function () {
  const A = '10.77.2.1';
  const B = '10.77.2.2';
  let iface: { dispose(): void } | undefined;
  let server: RpcServer;
  const events: RpcServerEvent[] = [];
  let slowCalls = 0;
  const slow: Procedure<number, number> = {
    name: 'SLOW', decodeArgs: (r) => r.uint(), encodeResult: (w, n) => void w.uint(n),
    handle: async (ms) => { slowCalls++; await sleep(ms); return ms; },
  };
  let program: ReturnType<typeof testProgram>;
  const none = { decodeArgs: () => undefined, encodeResult: () => undefined };
  const makeProgram = (slowProc: Procedure<number, number>): ReturnType<typeof testProgram> => testProgram(1, [
    [5, slowProc],
    [6, { name: 'TOOWEAK', ...none, handle: () => { throw new RpcAuthError(AUTH_STAT.AUTH_TOOWEAK); } }],
    [7, { name: 'GARBAGE', ...none, handle: () => { throw new RpcAcceptError('GARBAGE_ARGS'); } }],
    [8, { name: 'SILENT', ...none, handle: () => NO_REPLY }],
  ]);

  before(async function () {
    requireNamespaceRoot(this);
    iface = testInterface([A, B]);
    server = new RpcServer({ halfRecordTimeoutMs: 300, idleTimeoutMs: 1500, maxConnections: 6, maxRecordSize: 64 * 1024, onEvent: (e) => events.push(e) });
    program = makeProgram(slow);
    server.register(program);
    await server.addAddress(A);
    await server.addAddress(B);
  });
  after(async () => {
    await server?.close();
    iface?.dispose();
  });

  const stillServes = async (): Promise<void> => {
    for (const transport of ['udp', 'tcp'] as const) {
      const c = new RpcClient({ transport, host: B, port: server.port, timeoutMs: 2000 });
      try {
        assert.equal(await c.call(TEST_PROG, 1, 1, (w) => void w.string('ok'), (r) => r.string()), 'ok');
      } finally {
        c.close();
      }
    }
  };

  async function udpReply(msg: Buffer): Promise<Record<string, unknown> | undefined> {
    const replies = await udpAnswers(A, server.port, msg);
    assert.ok(replies.length <= 1, `one reply at most: ${replies.length}`);
    return replies[0] && stripVerf(decodeReply(replies[0]));
  }

  it('answers each bad call over UDP with the right error', async () => {
    const wrongVersion = call(1, TEST_PROG, 1, 0);
    wrongVersion.writeUInt32BE(3, 8);
    const sysCred = (name: string): Buffer => new XdrWriter().uint(0).string(name).uint(0).uint(0).uint(0).toBuffer();
    const badAuthSys = encodeCall({ xid: 8, prog: TEST_PROG, vers: 1, proc: 0, cred: { flavor: AUTH_SYS, body: sysCred('x'.repeat(300)) }, verf: NULL_AUTH });
    const unknownFlavor = encodeCall({ xid: 9, prog: TEST_PROG, vers: 1, proc: 0, cred: { flavor: 6, body: Buffer.alloc(8) }, verf: NULL_AUTH });
    assert.deepEqual(await udpReply(wrongVersion), { xid: 1, stat: 'RPC_MISMATCH', low: 2, high: 2 });
    assert.deepEqual(await udpReply(call(2, TEST_PROG + 7, 1, 0)), { xid: 2, stat: 'PROG_UNAVAIL' });
    assert.deepEqual(await udpReply(call(3, TEST_PROG, 9, 0)), { xid: 3, stat: 'PROG_MISMATCH', low: 1, high: 1 });
    assert.deepEqual(await udpReply(call(4, TEST_PROG, 1, 77)), { xid: 4, stat: 'PROC_UNAVAIL' });
    // ECHO whose string announces 100 bytes but carries 4: truncated arguments.
    assert.deepEqual(await udpReply(call(5, TEST_PROG, 1, 1, Buffer.from('0000006461626364', 'hex'))), { xid: 5, stat: 'GARBAGE_ARGS' });
    // NULL takes no arguments: trailing bytes are garbage too.
    assert.deepEqual(await udpReply(call(6, TEST_PROG, 1, 0, Buffer.alloc(4))), { xid: 6, stat: 'GARBAGE_ARGS' });
    assert.deepEqual(await udpReply(call(7, TEST_PROG, 1, 3)), { xid: 7, stat: 'SYSTEM_ERR' });
    assert.deepEqual(await udpReply(call(11, TEST_PROG, 1, 6)), { xid: 11, stat: 'AUTH_ERROR', authStat: AUTH_STAT.AUTH_TOOWEAK });
    assert.deepEqual(await udpReply(call(12, TEST_PROG, 1, 7)), { xid: 12, stat: 'GARBAGE_ARGS' });
    assert.equal(await udpReply(call(13, TEST_PROG, 1, 8)), undefined); // NO_REPLY
    assert.deepEqual(await udpReply(badAuthSys), { xid: 8, stat: 'AUTH_ERROR', authStat: AUTH_STAT.AUTH_BADCRED });
    assert.deepEqual(await udpReply(unknownFlavor), { xid: 9, stat: 'AUTH_ERROR', authStat: AUTH_STAT.AUTH_BADCRED });
    // A truncated header cannot be answered; a reply sent to a server is not a call: both dropped.
    assert.equal(await udpReply(call(10, TEST_PROG, 1, 0).subarray(0, 18)), undefined);
    assert.equal(await udpReply(Buffer.from('0000000b00000001', 'hex')), undefined);
    await stillServes();
  });

  it('survives random garbage datagrams (property), answering each that can be answered, and keeps answering', async () => {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, A, () => r()));
    const replies: Buffer[] = [];
    s.on('message', (m) => replies.push(m));
    // What must come back: the dispatcher's own answer to each sample (no sockets, a program of
    // its own), so every datagram the server loses or garbles shows as a missing reply.
    const oracle = new RpcDispatcher();
    oracle.register(makeProgram({ ...slow, handle: async (ms) => ms }));
    const meta = { transport: 'udp' as const, local: { address: A, port: server.port }, peer: { address: A, port: s.address().port } };
    const valid = call(99, TEST_PROG, 1, 1, new XdrWriter().string('hello').toBuffer());
    const samples = fc.sample(
      fc.oneof(
        fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
        fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 }), fc.nat(valid.length)).map(([i, b, cut]) => {
          const m = Buffer.from(valid);
          m[i] = b;
          return m.subarray(0, cut);
        }),
      ),
      { numRuns: 500, seed: 42 },
    );
    const expected: number[] = [];
    // In batches that fit the socket buffers: a burst of 500 may be dropped by the kernel, not the server.
    for (let at = 0; at < samples.length; at += 50) {
      for (const m of samples.slice(at, at + 50)) {
        const answer = await oracle.handle(m, meta);
        if (answer) expected.push(decodeReply(answer).xid);
        s.send(m, server.port, A);
      }
      await waitFor(`${expected.length} replies`, () => replies.length >= expected.length);
    }
    s.close();
    assert.ok(expected.length >= 50, `the samples include answerable calls: ${expected.length}`);
    assert.equal(replies.length, expected.length);
    // Every reply is well formed and answers one of the calls sent.
    assert.deepEqual(replies.map((r) => decodeReply(r).xid).sort((a, b) => a - b), expected.sort((a, b) => a - b));
    await stillServes();
  });

  /**
   * Writes the chunks on a new connection; then, expecting `replies`, waits for them and proves
   * the connection still serves (one more NULL is answered on it), or waits for the server to close it.
   */
  async function tcpRecords(chunks: Buffer[], expect: { replies: number } | 'closed'): Promise<{ replies: Record<string, unknown>[]; closed: boolean }> {
    const t = await rawTcp(A, server.port);
    let closed = false;
    void t.closed.then(() => { closed = true; });
    for (const c of chunks) t.socket.write(c);
    const received = (): Buffer[] => new RecordDecoder(1 << 20).push(t.received());
    if (expect === 'closed') {
      await waitFor('the server to close the connection', () => closed);
    } else {
      await waitFor(`${expect.replies} replies`, () => received().length >= expect.replies || closed);
      t.socket.write(encodeRecord(call(0xc0ffee, TEST_PROG, 1, 0)));
      await waitFor('the reply to one more call', () => received().length > expect.replies || closed);
    }
    t.socket.destroy();
    const replies = received().map((r) => stripVerf(decodeReply(r)));
    if (expect !== 'closed' && !closed) assert.deepEqual(replies.pop(), { xid: 0xc0ffee, stat: 'SUCCESS' }, 'the connection still serves');
    return { replies, closed };
  }

  it('answers bad calls over TCP on the same connection, in order, and drops what cannot be answered', async () => {
    const wrongVersion = call(1, TEST_PROG, 1, 0);
    wrongVersion.writeUInt32BE(1, 8);
    const { replies, closed } = await tcpRecords([
      encodeRecord(wrongVersion),
      encodeRecord(call(2, TEST_PROG, 1, 0).subarray(0, 16)), // truncated header: no reply
      encodeRecord(call(3, TEST_PROG + 7, 1, 0)),
      encodeRecord(call(4, TEST_PROG, 1, 77)),
      encodeRecord(call(5, TEST_PROG, 1, 1, Buffer.from('00000064', 'hex'))),
      encodeRecord(call(7, TEST_PROG, 1, 8)), // NO_REPLY: nothing, and the next reply is not held up
      encodeRecord(call(6, TEST_PROG, 1, 0), 5), // a NULL in 5-byte fragments
    ], { replies: 5 });
    assert.equal(closed, false);
    assert.deepEqual(replies, [
      { xid: 1, stat: 'RPC_MISMATCH', low: 2, high: 2 },
      { xid: 3, stat: 'PROG_UNAVAIL' },
      { xid: 4, stat: 'PROC_UNAVAIL' },
      { xid: 5, stat: 'GARBAGE_ARGS' },
      { xid: 6, stat: 'SUCCESS' },
    ]);
  });

  it('replies on a connection in call order even when a later call finishes first', async () => {
    const arg = (ms: number): Buffer => new XdrWriter().uint(ms).toBuffer();
    const { replies } = await tcpRecords([encodeRecord(call(1, TEST_PROG, 1, 5, arg(150))), encodeRecord(call(2, TEST_PROG, 1, 5, arg(0)))], { replies: 2 });
    assert.deepEqual(replies.map((r) => r.xid), [1, 2]);
  });

  it('stops reading a connection with too many calls in progress, and resumes as they finish', async () => {
    let running = 0;
    let most = 0;
    const busy = new RpcServer({ maxCallsPerConnection: 4 });
    busy.register({ prog: TEST_PROG, vers: 1, procedures: new Map([[0, {
      name: 'BUSY', decodeArgs: () => undefined, encodeResult: () => undefined,
      handle: async () => { most = Math.max(most, ++running); await sleep(20); running--; },
    }]]) });
    await busy.addAddress(A);
    try {
      const t = await rawTcp(A, busy.port);
      for (let i = 0; i < 40; i++) t.socket.write(encodeRecord(call(i, TEST_PROG, 1, 0)));
      await waitFor('40 replies', () => new RecordDecoder(1 << 20).push(t.received()).length >= 40);
      const xids = new RecordDecoder(1 << 20).push(t.received()).map((r) => decodeReply(r).xid);
      assert.deepEqual(xids, Array.from({ length: 40 }, (_, i) => i));
      assert.equal(most, 4);
      t.socket.destroy();
    } finally {
      await busy.close();
    }
  });

  it('drops datagrams beyond the UDP calls in progress, answering the rest', async () => {
    const drops: string[] = [];
    const busy = new RpcServer({ maxUdpCallsInProgress: 3, onEvent: (e) => { if (e.kind === 'drop') drops.push(e.reason); } });
    busy.register(testProgram(1, [[5, slow]]));
    await busy.addAddress(A);
    try {
      const s = dgram.createSocket('udp4');
      const replies: Buffer[] = [];
      s.on('message', (m) => replies.push(m));
      await new Promise<void>((r) => s.bind(0, A, () => r()));
      for (let i = 0; i < 6; i++) s.send(call(100 + i, TEST_PROG, 1, 5, new XdrWriter().uint(200).toBuffer()), busy.port, A);
      await waitFor('3 replies and 3 drops', () => replies.length >= 3 && drops.length >= 3);
      assert.deepEqual(replies.map((r) => decodeReply(r).xid).sort(), [100, 101, 102]);
      assert.deepEqual(drops, Array(3).fill('too many calls in progress'));
      s.send(call(200, TEST_PROG, 1, 0), busy.port, A);
      await waitFor('the next reply', () => replies.length >= 4);
      assert.equal(replies.length, 4);
      assert.equal(decodeReply(replies[3]!).xid, 200);
      s.close();
    } finally {
      await busy.close();
    }
  });

  it('closes a connection announcing a 2 GiB fragment, before reading it', async () => {
    const { replies, closed } = await tcpRecords([Buffer.from('ffffffff', 'hex'), Buffer.alloc(1024)], 'closed');
    assert.equal(closed, true);
    assert.deepEqual(replies, []);
    assert.ok(events.some((e) => e.kind === 'drop' && /exceeds the maximum/.test(e.reason)));
    await stillServes();
  });

  it('closes a connection that sends half a record and stalls, keeping others', async () => {
    const other = await rawTcp(B, server.port);
    const t = await rawTcp(A, server.port);
    const started = Date.now();
    t.socket.write(encodeRecord(call(1, TEST_PROG, 1, 0)).subarray(0, 20));
    await t.closed;
    const took = Date.now() - started;
    assert.ok(took >= 250 && took < 3000, `closed after ${took} ms`);
    assert.equal(other.socket.destroyed, false);
    other.socket.write(encodeRecord(call(2, TEST_PROG, 1, 0)));
    const [reply] = await waitFor('the other connection\'s reply', () => {
      const records = new RecordDecoder(1024).push(other.received());
      return records.length > 0 && records;
    });
    assert.equal(decodeReply(reply!).stat, 'SUCCESS');
    other.socket.destroy();
    await stillServes();
  });

  it('closes idle connections', async () => {
    const t = await rawTcp(A, server.port);
    const started = Date.now();
    await t.closed;
    assert.ok(Date.now() - started >= 1400, 'idle timeout respected');
  });

  it('at the cap, a new connection closes the least recently active idle one (test/rpc/limits.test.ts has more)', async () => {
    const conns: Awaited<ReturnType<typeof rawTcp>>[] = [];
    for (let i = 0; i < 8; i++) conns.push(await rawTcp(A, server.port));
    await Promise.all(conns.slice(0, 2).map((c) => c.closed));
    const open = conns.filter((c) => !c.socket.destroyed && c.socket.readyState === 'open');
    assert.equal(open.length, 6);
    assert.ok(events.some((e) => e.kind === 'limit' && e.scope === 'server' && e.action === 'closed-idle'));
    for (const c of conns) c.socket.destroy();
    const count = (state: string): number => events.filter((e) => e.kind === 'connection' && e.state === state).length;
    await waitFor('the server to see every connection closed', () => count('open') === count('closed'));
    await stillServes();
  });

  describe('UDP duplicate-request cache', () => {
    /**
     * Sends the messages from one port, each once the previous one is answered (a client's
     * retransmission of an answered call), or all at once; returns once `replies` came back.
     */
    async function fromOnePort(msgs: Buffer[], replies: number, together = false): Promise<Buffer[]> {
      const s = dgram.createSocket('udp4');
      await new Promise<void>((r) => s.bind(0, A, () => r()));
      const got: Buffer[] = [];
      s.on('message', (m) => got.push(m));
      try {
        for (const [i, m] of msgs.entries()) {
          s.send(m, server.port, A);
          if (!together) await waitFor(`reply ${i + 1}`, () => got.length > i);
        }
        await waitFor(`${replies} replies`, () => got.length >= replies);
        return got;
      } finally {
        s.close();
      }
    }

    it('answers a retransmitted non-idempotent call from the cache without running it again', async () => {
      const before = program.count;
      const m = call(0x1234, TEST_PROG, 1, 4);
      const replies = await fromOnePort([m, m, m], 3);
      assert.equal(replies.length, 3);
      assert.ok(replies.every((r) => r.equals(replies[0]!)));
      assert.equal(program.count, before + 1);
      assert.ok(events.some((e) => e.kind === 'duplicate' && e.xid === 0x1234));
    });

    it('runs a call again when the same xid carries different bytes, or comes from another port', async () => {
      const before = program.count;
      await fromOnePort([call(0x2000, TEST_PROG, 1, 4), encodeCall({ xid: 0x2000, prog: TEST_PROG, vers: 1, proc: 4, cred: { flavor: 0, body: Buffer.alloc(4) }, verf: NULL_AUTH })], 2);
      await fromOnePort([call(0x2000, TEST_PROG, 1, 4)], 1);
      assert.equal(program.count, before + 3);
    });

    it('drops a duplicate of a call still in progress', async () => {
      const before = slowCalls;
      const dropped = (): number => events.filter((e) => e.kind === 'drop' && e.reason === 'duplicate in progress').length;
      const droppedBefore = dropped();
      const m = call(0x3000, TEST_PROG, 1, 5, new XdrWriter().uint(400).toBuffer());
      const replies = await fromOnePort([m, m], 1, true);
      assert.equal(slowCalls, before + 1);
      assert.equal(replies.length, 1);
      assert.equal(dropped(), droppedBefore + 1, 'the second copy was dropped, not answered late');
    });

    it('does not cache idempotent procedures', async () => {
      const m = call(0x4000, TEST_PROG, 1, 1, new XdrWriter().string('x').toBuffer());
      const n = events.filter((e) => e.kind === 'duplicate').length;
      assert.equal((await fromOnePort([m, m], 2)).length, 2);
      assert.equal(events.filter((e) => e.kind === 'duplicate').length, n);
    });
  });

  it('counts calls by program, procedure and status for metrics', () => {
    const calls = events.filter((e): e is Extract<RpcServerEvent, { kind: 'call' }> => e.kind === 'call');
    assert.ok(calls.some((e) => e.proc === 77 && e.stat === 'PROC_UNAVAIL'));
    assert.ok(calls.some((e) => e.proc === 1 && e.stat === 'SUCCESS' && e.transport === 'tcp'));
    assert.ok(calls.some((e) => e.stat === 'SYSTEM_ERR'));
  });
});
