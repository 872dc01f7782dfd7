import assert from 'node:assert/strict';
import { DROP_REPLY, DuplicateRequestCache, encodeCall, NO_REPLY, NULL_AUTH, RpcDispatcher, type Procedure } from '../../src/rpc';
import type { XdrWriter } from '../../src/xdr';

describe('rpc duplicate-request cache', () => {
  const call = (s: string): Buffer => Buffer.from(s);
  const peer = { address: '192.0.2.1', port: 900 };
  const L = '198.51.100.1';

  it('reports new, in progress, then done with the reply', () => {
    const c = new DuplicateRequestCache(4);
    const m = call('a');
    assert.deepEqual(c.begin(1, peer, L, m), { kind: 'new' });
    assert.deepEqual(c.begin(1, peer, L, call('a')), { kind: 'in-progress' });
    c.finish(1, peer, L, m, call('reply'));
    assert.deepEqual(c.begin(1, peer, L, call('a')), { kind: 'done', reply: call('reply') });
  });

  it('treats the same xid with different bytes as a new call (xid reuse)', () => {
    const c = new DuplicateRequestCache(4);
    c.begin(1, peer, L, call('a'));
    assert.deepEqual(c.begin(1, peer, L, call('b')), { kind: 'new' });
    c.finish(1, peer, L, call('a'), call('stale')); // the old call's late finish does not overwrite
    assert.deepEqual(c.begin(1, peer, L, call('b')), { kind: 'in-progress' });
    assert.equal(c.size, 1);
  });

  it('keeps calls with one xid apart by peer address, peer port and local address', () => {
    const c = new DuplicateRequestCache(8);
    const others = [{ address: '192.0.2.2', port: 900 }, { address: '192.0.2.1', port: 901 }];
    const m = call('a');
    c.begin(7, peer, L, m);
    for (const p of others) assert.deepEqual(c.begin(7, p, L, call('a')), { kind: 'new' });
    assert.deepEqual(c.begin(7, peer, '198.51.100.2', call('a')), { kind: 'new' });
    // xids that share a bucket (equal in the low 30 bits) are told apart too
    assert.deepEqual(c.begin(7 + 2 ** 30, peer, L, call('a')), { kind: 'new' });
    c.finish(7, peer, L, m, call('first'));
    assert.deepEqual(c.begin(7, peer, L, call('a')), { kind: 'done', reply: call('first') });
    assert.deepEqual(c.begin(7, others[0]!, L, call('a')), { kind: 'in-progress' });
    assert.equal(c.size, 5);
  });

  it('remembers a no-reply answer and forgets an abandoned call', () => {
    const c = new DuplicateRequestCache(4);
    const m = call('a');
    c.begin(1, peer, L, m);
    c.finish(1, peer, L, m, undefined);
    assert.deepEqual(c.begin(1, peer, L, call('a')), { kind: 'done', reply: undefined });
    const n = call('n');
    c.begin(2, peer, L, n);
    c.abandon(2, peer, L, n);
    assert.deepEqual(c.begin(2, peer, L, call('n')), { kind: 'new' });
  });

  it('is bounded, evicting the least recently used', () => {
    const c = new DuplicateRequestCache(3);
    for (const k of [1, 2, 3]) c.begin(k, peer, L, call(String(k)));
    c.begin(1, peer, L, call('1')); // touch 1: 2 is now the oldest
    c.begin(4, peer, L, call('4'));
    assert.equal(c.size, 3);
    assert.deepEqual(c.begin(2, peer, L, call('2')), { kind: 'new' });
    assert.deepEqual(c.begin(1, peer, L, call('1')), { kind: 'in-progress' });
    // many xids sharing one bucket, evicted from the middle and the head of its chain
    for (let i = 0; i < 1000; i++) c.begin(5 + (i % 4) * 2 ** 30, { address: '192.0.2.9', port: i }, L, call('x'));
    assert.equal(c.size, 3);
    for (let i = 997; i < 1000; i++) assert.deepEqual(c.begin(5 + (i % 4) * 2 ** 30, { address: '192.0.2.9', port: i }, L, call('x')), { kind: 'in-progress' });
  });
});

describe('rpc: a dropped reply (DROP_REPLY)', () => {
  // Linux's rpc_drop_reply: lockd answers nothing while a lease is being broken, and the
  // client's retransmission must run again, not find "no reply" in the duplicate-request cache.
  it('answers nothing and lets a UDP retransmission run again; NO_REPLY is cached', () => {
    const runs = { drop: 0, silent: 0 };
    const none = { decodeArgs: () => undefined, encodeResult: (w: XdrWriter, n: number) => void w.uint(n) };
    const d = new RpcDispatcher();
    d.register({
      prog: 400_123, vers: 1, procedures: new Map<number, Procedure<any, any>>([
        [1, { name: 'LATER', ...none, handle: () => (++runs.drop === 1 ? DROP_REPLY : 7) }],
        [2, { name: 'SILENT', ...none, handle: () => (runs.silent++, NO_REPLY) }],
      ]),
    });
    const meta = { transport: 'udp' as const, local: { address: '10.0.0.1', port: 4045 }, peer: { address: '10.0.0.2', port: 800 } };
    const msg = (proc: number) => encodeCall({ xid: 77 + proc, prog: 400_123, vers: 1, proc, cred: NULL_AUTH, verf: NULL_AUTH }, Buffer.alloc(0));
    assert.equal(d.handle(msg(1), meta), undefined, 'dropped');
    const again = d.handle(msg(1), meta) as Buffer;
    assert.ok(again, 'the retransmission ran again');
    assert.equal(again.readUInt32BE(again.length - 4), 7);
    assert.equal(runs.drop, 2);
    assert.equal(d.handle(msg(2), meta), undefined);
    assert.equal(d.handle(msg(2), meta), undefined);
    assert.equal(runs.silent, 1, 'a NO_REPLY call is answered (with nothing) from the cache');
  });
});
