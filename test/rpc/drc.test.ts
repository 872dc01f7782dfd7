import assert from 'node:assert/strict';
import { DuplicateRequestCache } from '../../src/rpc';

describe('rpc duplicate-request cache', () => {
  const call = (s: string): Buffer => Buffer.from(s);

  it('reports new, in progress, then done with the reply', () => {
    const c = new DuplicateRequestCache(4);
    const m = call('a');
    assert.deepEqual(c.begin('k', m), { kind: 'new' });
    assert.deepEqual(c.begin('k', call('a')), { kind: 'in-progress' });
    c.finish('k', m, call('reply'));
    assert.deepEqual(c.begin('k', call('a')), { kind: 'done', reply: call('reply') });
  });

  it('treats the same key with different bytes as a new call (xid reuse)', () => {
    const c = new DuplicateRequestCache(4);
    c.begin('k', call('a'));
    assert.deepEqual(c.begin('k', call('b')), { kind: 'new' });
    c.finish('k', call('a'), call('stale')); // the old call's late finish does not overwrite
    assert.deepEqual(c.begin('k', call('b')), { kind: 'in-progress' });
  });

  it('remembers a no-reply answer and forgets an abandoned call', () => {
    const c = new DuplicateRequestCache(4);
    const m = call('a');
    c.begin('k', m);
    c.finish('k', m, undefined);
    assert.deepEqual(c.begin('k', call('a')), { kind: 'done', reply: undefined });
    const n = call('n');
    c.begin('j', n);
    c.abandon('j', n);
    assert.deepEqual(c.begin('j', call('n')), { kind: 'new' });
  });

  it('is bounded, evicting the least recently used', () => {
    const c = new DuplicateRequestCache(3);
    for (const k of ['1', '2', '3']) c.begin(k, call(k));
    c.begin('1', call('1')); // touch 1: 2 is now the oldest
    c.begin('4', call('4'));
    assert.equal(c.size, 3);
    assert.deepEqual(c.begin('2', call('2')), { kind: 'new' });
    assert.deepEqual(c.begin('1', call('1')), { kind: 'in-progress' });
    for (let i = 0; i < 1000; i++) c.begin(`x${i}`, call('x'));
    assert.equal(c.size, 3);
  });
});
