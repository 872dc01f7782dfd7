// Undoing a grant and UNLOCK of a queued request, on the wire (issue 11, items 2 and 3):
// - CANCEL of a granted-but-unacknowledged upgrade, or a GRANTED the client refuses, leaves the
//   owner with exactly what it held before (its shared lock), never nothing: a third host's
//   exclusive LOCK stays denied;
// - UNLOCK cancels the same owner's queued request on that range: it is never granted later as a
//   lock nobody waits for.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { NlmClient } from '../../src/nlm';
import { clientFor, onLoopbackWithRpcbind, fh, startServer, type TestServer } from './harness';

const S1 = '192.0.2.41';
const C1 = '192.0.2.51';

describe('nlm: undoing a grant restores the owner\'s previous state; UNLOCK cancels its queued request', function () {
  this.timeout(20_000);
  let server: TestServer;
  const clients: NlmClient[] = [];
  const client = async (callerName: string, reply?: 'granted' | 'denied' | 'none'): Promise<NlmClient> => {
    const c = await clientFor(server, S1, { transport: 'udp', vers: 4, source: C1, callerName, ...(reply ? { callback: { rpcbind: true, reply } } : {}) });
    clients.push(c);
    return c;
  };
  onLoopbackWithRpcbind([S1, C1]);
  beforeEach(async () => {
    server = await startServer([S1], { options: { grantTimeoutMs: 5_000, grantRetryInitialMs: 100, grantRetryMaxMs: 200 } });
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close();
    await server.close();
  });

  /** A holds S on [0,100) with B; A asks X and is upgraded when B leaves, its GRANTED unanswered. */
  async function upgradePending(reply: 'none' | 'denied'): Promise<{ a: NlmClient; c: NlmClient; f: Buffer }> {
    const f = fh(`upgrade-${reply}`);
    const a = await client('host-a', reply);
    const b = await client('host-b');
    const c = await client('host-c');
    assert.equal((await a.lock({ fh: f, svid: 1, exclusive: false, offset: 0n, length: 100n })).status, 'granted');
    assert.equal((await b.lock({ fh: f, svid: 1, exclusive: false, offset: 0n, length: 100n })).status, 'granted');
    assert.equal((await a.lock({ fh: f, svid: 1, exclusive: true, offset: 0n, length: 100n, block: true })).status, 'blocked');
    const sent = a.waitGranted({ svid: 1 }, 3_000);
    assert.equal((await b.unlock({ fh: f, svid: 1, offset: 0n, length: 100n })).status, 'granted');
    await sent;
    return { a, c, f };
  }

  const heldBy = (host: string) => [...server.table.locks()].filter((l) => l.owner.host.startsWith(`${host}@`)).map((l) => `${l.exclusive ? 'X' : 'S'} ${l.offset}+${l.length}`);

  it('CANCEL of a granted, unacknowledged upgrade leaves the owner its shared lock', async () => {
    const { a, c, f } = await upgradePending('none');
    assert.deepEqual(heldBy('host-a'), ['X 0+100']);
    assert.equal((await a.cancel({ fh: f, svid: 1, exclusive: true, offset: 0n, length: 100n, block: true })).status, 'granted');
    assert.deepEqual(heldBy('host-a'), ['S 0+100'], 'back to what it held, not nothing');
    assert.equal((await c.lock({ fh: f, svid: 1, exclusive: true, offset: 0n, length: 100n })).status, 'denied', 'a third host cannot take the bytes');
    assert.equal((await c.lock({ fh: f, svid: 1, exclusive: false, offset: 0n, length: 100n })).status, 'granted', 'it may share them');
  });

  it('a GRANTED the client refuses is undone to the owner\'s shared lock too', async () => {
    const { c, f } = await upgradePending('denied');
    for (let i = 0; i < 100 && server.service.pendingGrants() !== 0; i++) await sleep(20);
    assert.equal(server.service.pendingGrants(), 0);
    assert.deepEqual(heldBy('host-a'), ['S 0+100']);
    assert.equal((await c.lock({ fh: f, svid: 1, exclusive: true, offset: 0n, length: 100n })).status, 'denied');
  });

  it('UNLOCK cancels the owner\'s queued request on that range: no phantom grant later', async () => {
    const f = fh('unlock-queued');
    const a = await client('host-a', 'granted');
    const b = await client('host-b');
    const c = await client('host-c');
    assert.equal((await b.lock({ fh: f, svid: 1, exclusive: true, offset: 0n, length: 10n })).status, 'granted');
    assert.equal((await a.lock({ fh: f, svid: 7, exclusive: true, offset: 0n, length: 10n, block: true })).status, 'blocked');
    assert.equal((await a.unlock({ fh: f, svid: 7, offset: 0n, length: 10n })).status, 'granted');
    assert.equal(server.table.stats().blocked, 0, 'the queued request went with the UNLOCK');
    assert.equal((await b.unlock({ fh: f, svid: 1, offset: 0n, length: 10n })).status, 'granted');
    await sleep(300);
    assert.equal(a.granted.length, 0, 'no GRANTED for a request the owner gave up');
    assert.deepEqual(heldBy('host-a'), []);
    assert.equal((await c.lock({ fh: f, svid: 1, exclusive: true, offset: 0n, length: 10n })).status, 'granted');
  });
});
