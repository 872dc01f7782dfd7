// Every watch line about one client names its address: the table's owners are host keys
// (caller_name@address), so grant, release and wait lines carry it (kept lines: views.test.ts);
// a reboot line too.
import assert from 'node:assert/strict';
import { describeChange, rebootLine } from '../../src/daemon/views';
import { hostKey, type HeldLock, type LockRequest } from '../../src/locks';

describe('daemon views: the client is named with its address', () => {
  const owner = { host: hostKey('client-a', '192.0.2.7'), svid: 3, oh: Buffer.from('oh') };
  const lock: HeldLock = { fh: Buffer.from('fh'), owner, exclusive: true, offset: 0n, length: 10n, serverAddress: '10.0.0.5', exportId: '/srv/a', since: 0 };
  const request: LockRequest = { fh: Buffer.from('fh'), owner, exclusive: false, offset: 5n, length: 1n, serverAddress: '10.0.0.5' };

  it('in grant, release and wait lines, and in a reboot line', () => {
    const lines = [
      describeChange({ type: 'granted', lock, viaBlock: true }),
      describeChange({ type: 'released', lock }),
      describeChange({ type: 'blocked', request }),
    ].map((e) => e.message);
    for (const l of lines) assert.ok(l.includes('client-a@192.0.2.7'), l);
    assert.equal(lines[0], 'granted (was blocked) write 0+10 to client-a@192.0.2.7 svid 3 via 10.0.0.5 on /srv/a');
    assert.equal(rebootLine(hostKey('client-a', '192.0.2.7'), 9, { locks: 2, shares: 0, blocked: 0, clients: 1, woken: 0 }), 'client-a@192.0.2.7 rebooted (state 9): released 2 locks, 0 shares');
  });
});
