// TCP connection limits (issue 11, item 5): idle connections cannot lock new clients out. At the
// server-wide cap a new connection closes the least recently active idle one (Linux
// svc_check_conn_limits); one peer address is capped on its own too; each limit reached is an
// event (for the metric) and a rate-limited warning.
import assert from 'node:assert/strict';
import net from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { encodeCall, encodeRecord, NULL_AUTH, RecordDecoder, RpcClient, RpcServer, type Procedure, type RpcServerEvent } from '../../src/rpc';
import { requireNamespaceRoot, testInterface } from '../support/netns';
import { waitFor } from '../support/wait';
import { TEST_PROG, testProgram } from './support';

const S = '10.77.5.1';
const A = '10.77.5.2'; // the client that opens too many
const B = '10.77.5.3'; // a newcomer
const C = '10.77.5.4';

/** TCP connections from `source`, opened `batch` at a time; each is open or already closed when this resolves. */
async function connectMany(n: number, source: string, port: number, batch = 128): Promise<net.Socket[]> {
  const out: net.Socket[] = [];
  for (let i = 0; i < n; i += batch) {
    out.push(...await Promise.all(Array.from({ length: Math.min(batch, n - i) }, () => new Promise<net.Socket>((resolve) => {
      const s = net.connect({ host: S, port, localAddress: source });
      s.on('error', () => undefined);
      s.once('connect', () => resolve(s));
      s.once('close', () => resolve(s));
    }))));
  }
  return out;
}

const stillOpen = (socks: net.Socket[]): net.Socket[] => socks.filter((s) => !s.destroyed && s.readyState === 'open');

/** One NULL over a raw connection; resolves once its reply is back. */
function nullOver(s: net.Socket, xid: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const d = new RecordDecoder(1024);
    const onData = (chunk: Buffer): void => {
      if (d.push(chunk).length > 0) {
        s.off('data', onData);
        resolve();
      }
    };
    s.on('data', onData);
    s.once('close', () => reject(new Error('closed before the reply')));
    s.write(encodeRecord(encodeCall({ xid, prog: TEST_PROG, vers: 1, proc: 0, cred: NULL_AUTH, verf: NULL_AUTH }, Buffer.alloc(0))));
  });
}

describe('rpc server: connection limits', function () {
  this.timeout(60_000);
  let iface: { dispose(): void } | undefined;
  let server: RpcServer | undefined;
  const sockets: net.Socket[] = [];
  const events: RpcServerEvent[] = [];
  const limits = (): Extract<RpcServerEvent, { kind: 'limit' }>[] => events.filter((e): e is Extract<RpcServerEvent, { kind: 'limit' }> => e.kind === 'limit');
  let release: () => void = () => undefined;
  let held = 0;
  const hold: Procedure<void, void> = {
    name: 'HOLD', decodeArgs: () => undefined, encodeResult: () => undefined,
    handle: () => new Promise<void>((resolve) => {
      held++;
      const prior = release;
      release = () => { prior(); resolve(); };
    }),
  };

  before(function () {
    requireNamespaceRoot(this);
    iface = testInterface([S, A, B, C]);
  });
  afterEach(async () => {
    release();
    for (const s of sockets.splice(0)) s.destroy();
    await server?.close();
    server = undefined;
    events.length = 0;
    held = 0;
  });
  after(() => iface?.dispose());

  async function start(o: ConstructorParameters<typeof RpcServer>[0] = {}): Promise<RpcServer> {
    server = new RpcServer({ onEvent: (e) => events.push(e), ...o });
    server.register(testProgram(1, [[9, hold]]));
    await server.addAddress(S);
    return server;
  }

  const newcomerServed = async (from: string): Promise<void> => {
    const c = new RpcClient({ transport: 'tcp', host: S, port: server!.port, source: from, timeoutMs: 3_000 });
    try {
      assert.equal(await c.call(TEST_PROG, 1, 1, (w) => void w.string('hello'), (r) => r.string()), 'hello');
    } finally {
      c.close();
    }
  };

  it('1,030 idle connections from one address (default limits): a client from another address is served', async () => {
    const logged: Record<string, unknown>[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _enc, done) => { logged.push(JSON.parse(chunk.toString())); done(); } });
    const s = await start({ log: pino({ level: 'warn' }, sink) });
    sockets.push(...await connectMany(1030, A, s.port));
    await newcomerServed(B);
    // A keeps only its newest 64: each one beyond closed A's own least recently active idle one.
    await waitFor(`64 of A's connections open (now ${stillOpen(sockets).length})`, () => stillOpen(sockets).length === 64);
    assert.equal(limits().filter((e) => e.scope === 'peer' && e.action === 'closed-idle').length, 1030 - 64);
    assert.ok(limits().every((e) => e.peer.address === A && e.closed?.address === A));
    // One warning for the burst, not one per connection.
    assert.equal(logged.length, 1, JSON.stringify(logged));
    assert.equal(logged[0]!.level, 40);
    assert.match(String(logged[0]!.msg), /too many open connections from 10\.77\.5\.2 \(the per-peer limit is 64\): closed the least recently active idle one/);
  });

  it('at the server-wide cap (1,024 by default) a new connection closes the least recently active idle one', async () => {
    const s = await start({ maxConnectionsPerPeer: 4096 });
    const first = await connectMany(1024, A, s.port);
    sockets.push(...first);
    assert.equal(stillOpen(first).length, 1024);
    // The very first one is the oldest, but it was active a moment ago: it stays.
    await nullOver(first[0]!, 1);
    const late = await connectMany(6, A, s.port);
    sockets.push(...late);
    await waitFor('the cap holds', () => stillOpen(sockets).length === 1024);
    assert.equal(first[0]!.readyState, 'open', 'the recently active connection was kept');
    assert.deepEqual(first.slice(1, 7).map((c) => c.readyState === 'open'), [false, false, false, false, false, false], 'the oldest idle ones were closed');
    await newcomerServed(B);
    const atCap = limits().filter((e) => e.scope === 'server');
    assert.equal(atCap.length, 7); // six late ones from A, then B
    assert.ok(atCap.every((e) => e.action === 'closed-idle' && e.limit === 1024 && e.closed?.address === A));
  });

  it('a connection with a call in progress is never closed for a newcomer; with all busy the newcomer is refused', async () => {
    const s = await start({ maxConnections: 3, maxConnectionsPerPeer: 2 });
    const busy = await connectMany(2, A, s.port);
    const other = await connectMany(1, C, s.port);
    sockets.push(...busy, ...other);
    const call = (x: net.Socket, xid: number): void => void x.write(encodeRecord(encodeCall({ xid, prog: TEST_PROG, vers: 1, proc: 9, cred: NULL_AUTH, verf: NULL_AUTH }, Buffer.alloc(0))));
    busy.forEach((x, i) => call(x, 10 + i));
    call(other[0]!, 20);
    await waitFor('three connections accepted', () => events.filter((e) => e.kind === 'connection' && e.state === 'open').length === 3);
    await waitFor('the three calls are in their handler', () => held === 3);
    // A third from A: A is at its cap of 2, both busy.
    const refused = await connectMany(1, A, s.port);
    sockets.push(...refused);
    await waitFor('refused', () => refused[0]!.destroyed);
    assert.deepEqual(limits().map((e) => [e.scope, e.action]), [['peer', 'refused']]);
    // One from B: the server is at 3, all busy.
    const refusedToo = await connectMany(1, B, s.port);
    sockets.push(...refusedToo);
    await waitFor('refused', () => refusedToo[0]!.destroyed);
    assert.deepEqual(limits().map((e) => [e.scope, e.action]), [['peer', 'refused'], ['server', 'refused']]);
    assert.equal(stillOpen([...busy, ...other]).length, 3, 'no busy connection was closed');
    // Once the calls finish the connections are idle again and yield to a newcomer.
    release();
    release = () => undefined;
    await waitFor('the three calls answered', () => events.filter((e) => e.kind === 'call' && e.proc === 9).length === 3);
    await newcomerServed(B);
    assert.deepEqual(limits().at(-1)?.action, 'closed-idle');
  });
});
