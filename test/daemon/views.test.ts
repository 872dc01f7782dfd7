// What `lockdropctl watch` says of the lock journal's decisions: a request refused to keep a moved
// lock for its owner, a grace that ended by reclaim or at its deadline, a barrier a node did not
// confirm, a lock lost while its address moved.
import assert from 'node:assert/strict';
import { describeChange, describeReport } from '../../src/daemon/views';
import { hostKey } from '../../src/locks';

describe('daemon: watch lines of the lock journal', () => {
  it('names who a refused request would have taken the bytes from, and through which address', () => {
    const e = describeChange({
      type: 'kept',
      request: { fh: Buffer.from('abcd', 'hex'), owner: { host: hostKey('client-b', '10.0.0.8'), svid: 3, oh: Buffer.from('o') }, exclusive: true, offset: 0n, length: 100n, serverAddress: '10.0.0.2' },
      holder: { host: hostKey('client-a', '10.0.0.7'), address: '10.0.0.1' },
    });
    assert.equal(e.kind, 'blocked');
    assert.equal(e.address, '10.0.0.2');
    assert.equal(e.message, "refused client-b@10.0.0.8's write lock 0+100 on fh abcd via 10.0.0.2: held by client-a@10.0.0.7 through 10.0.0.1, awaiting reclaim");
  });

  it('says how a grace ended, names the nodes a barrier missed, and says a lost lock as it was logged', () => {
    assert.deepEqual(describeReport({ type: 'grace-ended', address: 'V', reclaimed: true, locks: 812, unreclaimed: 0, line: 'grace of V ended: 812 of 812 locks reclaimed by 37 hosts in 0.41 s' }), { kind: 'grace', address: 'V', message: 'grace of V ended: 812 of 812 locks reclaimed by 37 hosts in 0.41 s' });
    assert.equal(describeReport({ type: 'barrier', address: 'V', missing: [], ms: 1 }), undefined, 'a barrier every node confirmed is not news');
    assert.equal(describeReport({ type: 'barrier', address: 'V', missing: ['node-b'], ms: 2000 })?.message, 'V: node-b did not confirm its journal in 2000 ms');
    assert.equal(describeReport({ type: 'error', address: 'V', step: 'lost-lock', error: 'x could not be held' })?.message, 'x could not be held');
  });
});
