import assert from 'node:assert/strict';
import { XdrReader, XdrWriter } from '../../src/xdr';
import { inTestNamespace } from '../support/netns';

describe('xdr smoke', () => {
  it('round-trips a string with padding', () => {
    const b = new XdrWriter().string('abcde').toBuffer();
    assert.equal(b.length, 12);
    assert.equal(new XdrReader(b).string(), 'abcde');
  });
  it('runs in the private test namespace as root', function () {
    if (process.getuid?.() !== 0) this.skip();
    assert.ok(inTestNamespace());
  });
});
