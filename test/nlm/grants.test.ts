// The grant lifecycle on the wire (issue 11, item 1): a GRANTED / GRANTED_MSG still pending when
// the client confirms the lock by another path — a re-sent blocked LOCK answered granted, an
// UNLOCK, FREE_ALL, its reboot — is withdrawn. A late `denied` or the give-up timer must then
// never release what the client holds; only a grant still unconfirmed is undone.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TransportKind } from '../../src/rpc';
import { NlmClient, NlmProc, NlmStat, type GrantedCallback } from '../../src/nlm';
import { clientFor, onLoopbackWithRpcbind, fh, startServer, type TestServer } from './harness';

const S1 = '192.0.2.21';
const C1 = '192.0.2.31';
const GRANT_TIMEOUT_MS = 600;
/** Past the give-up deadline of any grant pending when it starts, with room for a retry in flight. */
const WINDOW_MS = GRANT_TIMEOUT_MS + 400;

describe('nlm grant lifecycle over the wire', function () {
  this.timeout(20_000);
  onLoopbackWithRpcbind([S1, C1]);

  for (const transport of ['udp', 'tcp'] as TransportKind[]) {
    describe(`over ${transport}`, () => {
      let server: TestServer;
      const clients: NlmClient[] = [];
      const client = async (o: Partial<Parameters<typeof clientFor>[2]> & { vers: 1 | 3 | 4 }): Promise<NlmClient> => {
        const c = await clientFor(server, S1, { transport, source: C1, ...o });
        clients.push(c);
        return c;
      };
      beforeEach(async () => {
        server = await startServer([S1], { options: { grantTimeoutMs: GRANT_TIMEOUT_MS, grantRetryInitialMs: 100, grantRetryMaxMs: 200 } });
      });
      afterEach(async () => {
        for (const c of clients.splice(0)) await c.close();
        await server.close();
      });

      /** GRANTED callbacks reaching `c` from now on (count read when the window closes). */
      const countGranted = (c: NlmClient): (() => number) => {
        let n = 0;
        const on = (): void => void n++;
        c.on('granted', on);
        return () => {
          c.off('granted', on);
          return n;
        };
      };

      /**
       * Client a holds the file, b's blocking LOCK queues, a unlocks: b is granted and its
       * GRANTED reaches b, which does not answer (the answer got lost), so the grant stays pending.
       */
      async function pendingGrant(name: string, o: { async?: boolean; vers?: 3 | 4 } = {}): Promise<{ a: NlmClient; b: NlmClient; f: Buffer; g: GrantedCallback }> {
        const vers = o.vers ?? 4;
        const a = await client({ vers });
        const b = await client({ vers, callerName: 'client-b', callback: { rpcbind: true, reply: 'none' } });
        const f = fh(name);
        assert.equal((await a.lock({ fh: f, svid: 1, offset: 0n, length: 100n })).status, 'granted');
        if (o.async) assert.equal((await b.waitRes(await b.lockMsg({ fh: f, svid: 2, block: true, offset: 0n, length: 100n }))).status, 'blocked');
        else assert.equal((await b.lock({ fh: f, svid: 2, block: true, offset: 0n, length: 100n })).status, 'blocked');
        await a.unlock({ fh: f, svid: 1, offset: 0n, length: 100n });
        const g = await b.waitGranted({ svid: 2 });
        assert.equal(g.async, o.async ?? false);
        assert.equal(server.service.pendingGrants(), 1);
        return { a, b, f, g };
      }

      it('a re-sent blocked LOCK answered granted confirms the grant: a later denied and the give-up timer release nothing', async () => {
        const { a, b, f } = await pendingGrant('resent');
        // A second grant to b, for another owner, that b never confirms: it must still be undone.
        const other = fh('resent-other');
        assert.equal((await a.lock({ fh: other, svid: 1 })).status, 'granted');
        assert.equal((await b.lock({ fh: other, svid: 3, block: true })).status, 'blocked');
        await a.unlock({ fh: other, svid: 1 });
        await b.waitGranted({ svid: 3 });
        assert.equal(server.service.pendingGrants(), 2);

        // Linux clients re-send a blocked LOCK every 30 s: the table already holds it for b.
        assert.equal((await b.lock({ fh: f, svid: 2, block: true, offset: 0n, length: 100n })).status, 'granted');
        assert.equal(server.service.pendingGrants(), 1, 'the confirmed grant is withdrawn, the other stays');
        b.answerGranted('denied'); // b no longer waits: a GRANTED now would be refused
        const granted = countGranted(b);
        await sleep(WINDOW_MS);
        assert.equal(server.service.pendingGrants(), 0);
        assert.ok(granted() >= 1, 'the unconfirmed grant was retried');
        assert.equal((await a.lock({ fh: f, svid: 1, offset: 50n, length: 1n })).status, 'denied', 'b still holds what it confirmed');
        assert.equal((await a.lock({ fh: other, svid: 1 })).status, 'granted', 'the unconfirmed grant was undone');
      });

      it('GRANTED_MSG: a re-sent LOCK_MSG answered granted confirms it; a late GRANTED_RES denied releases nothing', async () => {
        const { a, b, f, g } = await pendingGrant('resent-msg', { async: true, vers: 3 });
        const lc = await b.lockMsg({ fh: f, svid: 2, block: true, offset: 0n, length: 100n });
        assert.equal((await b.waitRes(lc)).status, 'granted');
        assert.equal(server.service.pendingGrants(), 0);
        // The client's answer to the earlier GRANTED_MSG arrives late, and says it did not want it.
        await b.sendRes(NlmProc.GRANTED_RES, { cookie: g.cookie, stat: NlmStat.denied });
        b.answerGranted('denied');
        const granted = countGranted(b);
        await sleep(WINDOW_MS);
        assert.equal(granted(), 0, 'no GRANTED_MSG after the confirmation');
        assert.equal((await a.lock({ fh: f, svid: 1, offset: 0n, length: 1n })).status, 'denied');
      });

      it('UNLOCK then a fresh LOCK while the GRANTED is pending: no GRANTED follows, the new lock holds', async () => {
        const { a, b, f } = await pendingGrant('unlock');
        assert.equal((await b.unlock({ fh: f, svid: 2, offset: 0n, length: 100n })).status, 'granted');
        assert.equal(server.service.pendingGrants(), 0);
        b.answerGranted('denied');
        const granted = countGranted(b);
        await sleep(WINDOW_MS);
        assert.equal(granted(), 0, 'no GRANTED for a lock the client unlocked');
        assert.equal((await b.lock({ fh: f, svid: 2, offset: 0n, length: 100n })).status, 'granted');
        await sleep(WINDOW_MS);
        assert.equal((await a.lock({ fh: f, svid: 1, offset: 10n, length: 1n })).status, 'denied', 'the new lock was not undone');
      });

      it('FREE_ALL stops the host\'s pending GRANTED: none goes out after it, a new lock holds', async () => {
        const { a, b, f } = await pendingGrant('freeall');
        await b.freeAll();
        assert.equal(server.service.pendingGrants(), 0);
        b.answerGranted('denied');
        const granted = countGranted(b);
        await sleep(WINDOW_MS);
        assert.equal(granted(), 0, 'no GRANTED for a lock FREE_ALL released');
        assert.equal((await b.lock({ fh: f, svid: 2, offset: 0n, length: 100n })).status, 'granted');
        assert.equal((await a.lock({ fh: f, svid: 1, offset: 10n, length: 1n })).status, 'denied');
      });

      it('the host\'s reboot (the daemon: dropByHost, then forgetHost) stops its pending GRANTED', async () => {
        const { a, b, f } = await pendingGrant('reboot');
        const host = `client-b@${C1}`;
        server.table.dropByHost(host);
        server.service.forgetHost(host);
        assert.equal(server.service.pendingGrants(), 0);
        b.answerGranted('denied');
        const granted = countGranted(b);
        assert.equal((await b.lock({ fh: f, svid: 2, offset: 0n, length: 100n })).status, 'granted'); // reclaimed after the reboot
        await sleep(WINDOW_MS);
        assert.equal(granted(), 0);
        assert.equal((await a.lock({ fh: f, svid: 1, offset: 10n, length: 1n })).status, 'denied');
      });
    });
  }
});
