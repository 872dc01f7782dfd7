// The NLM handlers keep each client address's last caller_name and host key, so that a client's
// calls reuse one key string: the cache must never give one host's key to another.
import assert from 'node:assert/strict';
import { AUTH_SYS, type CallContext } from '../../src/rpc';
import { createNlmService, NlmProc, type NlmLockTable } from '../../src/nlm';
import type { LockRequest } from '../../src/locks';

describe('nlm host keys', () => {
  it('are (caller_name, address) whatever the order of the calls', () => {
    const hosts: string[] = [];
    const table = { lock: (r: LockRequest) => (hosts.push(r.owner.host), 'granted'), unlock: (r: LockRequest) => (hosts.push(r.owner.host), 'granted') } as unknown as NlmLockTable;
    const service = createNlmService({ table });
    try {
      const v4 = service.programs.find((p) => p.vers === 4)!;
      const ctx = (address: string): CallContext => ({
        xid: 1, prog: v4.prog, vers: 4, proc: NlmProc.LOCK, transport: 'tcp', local: { address: '10.0.0.9', port: 2049 }, peer: { address, port: 700 },
        cred: { flavor: AUTH_SYS, stamp: 0, machineName: 'x', uid: 0, gid: 0, gids: [] },
      });
      const lock = (callerName: string, address: string, proc: number = NlmProc.LOCK): void => {
        const l = { callerName, fh: Buffer.from('fh'), oh: Buffer.from('oh'), svid: 1, offset: 0n, length: 1n };
        const args = proc === NlmProc.LOCK ? { cookie: Buffer.alloc(1), block: false, exclusive: true, lock: l, reclaim: false, state: 1 } : { cookie: Buffer.alloc(1), lock: l };
        v4.procedures.get(proc)!.handle(args, ctx(address));
      };
      lock('alpha', '10.0.0.1');
      lock('alpha', '10.0.0.1', NlmProc.UNLOCK);
      lock('beta', '10.0.0.1'); // another name from the same address
      lock('alpha', '10.0.0.1');
      lock('alpha', '10.0.0.2'); // the same name from another address
      lock('alpha', '10.0.0.1', NlmProc.UNLOCK);
      assert.deepEqual(hosts, ['alpha@10.0.0.1', 'alpha@10.0.0.1', 'beta@10.0.0.1', 'alpha@10.0.0.1', 'alpha@10.0.0.2', 'alpha@10.0.0.1']);
    } finally {
      service.close();
    }
  });
});
