// The NLM service tells onRefused of the requests this server refuses once their export let them
// in (stale_fh, denied_nolocks, rofs, failed; a host that cannot be monitored) with the client's
// caller_name, and never of lock traffic (denied, blocked, grace); the export policy is given the
// caller_name too. The daemon's log of both is tested through lockdropd in test/daemon/refusals.
import assert from 'node:assert/strict';
import { AUTH_SYS, type CallContext } from '../../src/rpc';
import { createNlmService, NlmProc, NlmStat, type NlmLockTable, type NlmRefusal } from '../../src/nlm';
import type { LockStatus } from '../../src/locks';

describe('nlm: refusals are told with the caller_name', () => {
  let answer: LockStatus = 'granted';
  const table = { test: () => ({ status: answer, holder: { exclusive: true, owner: { svid: 2 }, offset: 0n, length: 1n } }), lock: () => answer, unlock: () => answer, share: () => answer, hostsAt: () => new Set() } as unknown as NlmLockTable;
  const told: Array<{ r: NlmRefusal; peer: string; server: string }> = [];
  const policyNames: string[] = [];
  let monitorable = true;
  const service = createNlmService({
    table,
    monitor: { monitor: () => monitorable, unmonitor: () => undefined },
    exportPolicy: (fh, _peer, _ctx, callerName) => (policyNames.push(callerName), { allowed: !fh.equals(Buffer.from('secret')), secure: false }),
    onRefused: (r, ctx) => told.push({ r, peer: ctx.peer.address, server: ctx.local.address }),
  });
  after(() => service.close());
  beforeEach(() => {
    told.length = 0;
    policyNames.length = 0;
    answer = 'granted';
    monitorable = true;
  });

  const call = (vers: 3 | 4, proc: number, o: { callerName?: string; fh?: string } = {}): { stat: number } => {
    const v = service.programs.find((p) => p.vers === vers)!;
    const ctx: CallContext = {
      xid: 1, prog: v.prog, vers, proc, transport: 'udp', local: { address: '10.0.0.9', port: 4045 }, peer: { address: '10.0.0.1', port: 700 },
      cred: { flavor: AUTH_SYS, stamp: 0, machineName: 'box', uid: 0, gid: 0, gids: [] },
    };
    const callerName = o.callerName ?? 'client-a';
    const fh = Buffer.from(o.fh ?? 'fh');
    const lock = { callerName, fh, oh: Buffer.from('oh'), svid: 1, offset: 0n, length: 1n };
    const args = proc === NlmProc.SHARE
      ? { cookie: Buffer.alloc(1), share: { callerName, fh, oh: Buffer.from('oh'), mode: 0, access: 1 }, reclaim: false }
      : { cookie: Buffer.alloc(1), block: false, exclusive: true, lock, reclaim: false, state: 1 };
    return v.procedures.get(proc)!.handle(args, ctx) as { stat: number };
  };

  it("the table's refusals, on every procedure that asks it, with the status before v1/v3 fold it", () => {
    answer = 'stale_fh';
    assert.equal(call(4, NlmProc.LOCK).stat, NlmStat.stale_fh);
    assert.equal(call(3, NlmProc.LOCK, { callerName: 'old-client' }).stat, NlmStat.denied_nolocks);
    answer = 'denied_nolocks';
    call(4, NlmProc.TEST);
    answer = 'rofs';
    call(4, NlmProc.SHARE);
    answer = 'failed';
    call(4, NlmProc.UNLOCK);
    assert.deepEqual(told.map((t) => [t.r.callerName, t.r.status, t.r.reason, t.peer, t.server]), [
      ['client-a', 'stale_fh', 'stale-handle', '10.0.0.1', '10.0.0.9'],
      ['old-client', 'stale_fh', 'stale-handle', '10.0.0.1', '10.0.0.9'],
      ['client-a', 'denied_nolocks', 'no-locks', '10.0.0.1', '10.0.0.9'],
      ['client-a', 'rofs', 'read-only', '10.0.0.1', '10.0.0.9'],
      ['client-a', 'failed', 'failed', '10.0.0.1', '10.0.0.9'],
    ]);
  });

  it('lock traffic is not a refusal', () => {
    for (const s of ['granted', 'denied', 'blocked', 'denied_grace_period'] as const) {
      answer = s;
      call(4, NlmProc.LOCK);
      call(4, NlmProc.TEST);
    }
    assert.deepEqual(told, []);
  });

  it('a host that cannot be monitored is told as unmonitored', () => {
    monitorable = false;
    assert.equal(call(4, NlmProc.LOCK, { callerName: 'no-statd' }).stat, NlmStat.denied_nolocks);
    assert.deepEqual(told.map((t) => [t.r.callerName, t.r.reason]), [['no-statd', 'unmonitored']]);
  });

  it("the export policy gets the caller_name and tells its own refusals (onRefused does not repeat them)", () => {
    assert.equal(call(4, NlmProc.LOCK, { callerName: 'outsider', fh: 'secret' }).stat, NlmStat.failed);
    call(4, NlmProc.SHARE, { callerName: 'sharer' });
    assert.deepEqual(policyNames, ['outsider', 'sharer']);
    assert.deepEqual(told, []);
  });
});
