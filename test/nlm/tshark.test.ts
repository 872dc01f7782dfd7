// tshark dissects a whole NLM session (every procedure, versions 1, 3 and 4, UDP and TCP)
// captured on lo in the test namespace, without a single malformed-packet mark.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { NlmProc, type NlmClient } from '../../src/nlm';
import { hasCommand, requireNamespaceRoot, sh, startCapture, startRpcbind, type Capture } from '../support/netns';
import { addLoopbackAddresses, clientFor, fh, startServer } from './harness';

const S1 = '192.0.2.1';
const C1 = '192.0.2.11';

async function session(c: NlmClient, vers: number, other: NlmClient): Promise<void> {
  const f = fh(`ts${vers}`);
  await c.null();
  await c.test({ fh: f, svid: 1 });
  await c.lock({ fh: f, svid: 1, offset: 0n, length: 100n });
  await other.test({ fh: f, svid: 2 }); // denied, with a holder
  assert.equal((await other.lock({ fh: f, svid: 2, block: true })).status, 'blocked');
  await other.cancel({ fh: f, svid: 2, block: true });
  assert.equal((await other.lock({ fh: f, svid: 2, block: true })).status, 'blocked');
  await c.unlock({ fh: f, svid: 1, offset: 0n, length: 100n }); // → GRANTED callback to `other`
  await c.waitGranted({ svid: 2 }); // c serves the client machine's callbacks
  await c.grantedCall({ fh: f, svid: 1 });
  await c.waitRes(await other.testMsg({ fh: f, svid: 3 })); // TEST_RES denied with holder
  const lc = await c.lockMsg({ fh: f, svid: 1, block: true }); // blocked behind `other`
  await c.waitRes(lc);
  await c.waitRes(await other.unlockMsg({ fh: f, svid: 2 })); // → GRANTED_MSG to c, GRANTED_RES back
  await c.waitGranted({ svid: 1 });
  await c.waitRes(await c.cancelMsg({ fh: f, svid: 9 }));
  await c.waitRes(await c.grantedMsg({ fh: f, svid: 1 }));
  await c.sendRes(NlmProc.TEST_RES, { cookie: Buffer.from('t'), stat: 0 });
  await c.sendRes(NlmProc.LOCK_RES, { cookie: Buffer.from('l'), stat: 0 });
  await c.sendRes(NlmProc.CANCEL_RES, { cookie: Buffer.from('c'), stat: 0 });
  await c.sendRes(NlmProc.UNLOCK_RES, { cookie: Buffer.from('u'), stat: 0 });
  if (vers !== 1) {
    await c.share({ fh: f, mode: 1, access: 3 });
    await c.unshare({ fh: f, mode: 1, access: 3 });
    await c.nmLock({ fh: fh(`nm${vers}`), svid: 4 });
    await c.freeAll(1);
  }
  await c.unlock({ fh: f, svid: 1 });
}

/**
 * The capture's bounds are events, not delays: a marker datagram (inside the capture filter) and
 * the capture file holding it. Packets are written in the order captured, so a start marker held
 * means everything sent after it will be, and an end marker held means everything sent before it
 * is. dumpcap says "Capturing on" before its capture is live (a datagram sent at once is lost), so
 * the start marker is sent again every `resendMs` until one is held.
 */
async function mark(capture: Capture, what: 'start' | 'end', resendMs = 250, tries = 40): Promise<void> {
  const marker = Buffer.concat([Buffer.from(`lockdrop-capture-${what}:`), randomBytes(16)]);
  const u = createSocket('udp4');
  try {
    for (let i = 1; ; i++) {
      await new Promise<void>((resolve, reject) => u.send(marker, 9, S1, (err) => (err ? reject(err) : resolve())));
      try {
        return await capture.holds(marker, what === 'end' ? 10_000 : resendMs);
      } catch (err) {
        if (what === 'end' || i >= tries) throw err;
      }
    }
  } finally {
    u.close();
  }
}

describe('nlm session dissected by tshark', function () {
  this.timeout(60_000);
  it('has NLM in every version and no malformed packets', async function () {
    requireNamespaceRoot(this);
    if (!hasCommand('tshark') || !hasCommand('dumpcap')) this.skip();
    const removeAddresses = addLoopbackAddresses([S1, C1]);
    const stopRpcbind = await startRpcbind();
    const dir = mkdtempSync(join(tmpdir(), 'nlm-tshark-'));
    const file = join(dir, 'nlm.pcapng');
    const capture = await startCapture('lo', file, `host ${S1}`);
    await mark(capture, 'start');
    const server = await startServer([S1]);
    const clients: NlmClient[] = [];
    try {
      for (const transport of ['udp', 'tcp'] as const) {
        for (const vers of [1, 3, 4] as const) {
          const c = await clientFor(server, S1, { transport, vers, source: C1, callerName: `cl-${transport}-${vers}`, callback: { rpcbind: true } });
          clients.push(c);
          // A second process on the same client machine: its callbacks reach c's lock manager (rpcbind).
          const other = await clientFor(server, S1, { transport, vers, source: C1, callerName: `cl-${transport}-${vers}` });
          clients.push(other);
          await session(c, vers, other);
          for (const x of [c, other]) await x.close();
          clients.length = 0;
        }
      }
      // dumpcap hands packets over in blocks: a stop before it has written them loses them.
      await mark(capture, 'end');
    } finally {
      for (const c of clients) await c.close();
      await server.close();
      await capture.stop();
      await stopRpcbind();
      removeAddresses();
    }
    sh('sh', ['-c', `tshark -r '${file}' -V > '${file}.txt' 2>/dev/null`]);
    const text = readFileSync(`${file}.txt`, 'utf8');
    if (!process.env.KEEP_CAPTURE) rmSync(dir, { recursive: true, force: true });
    assert.ok(!/malformed/i.test(text), text.split('\n').filter((l) => /malformed/i.test(l)).slice(0, 5).join('\n'));
    const summary = text.split('\n').filter((l) => /Network Lock Manager Protocol/.test(l));
    assert.ok(summary.length > 100, `NLM seen ${summary.length} times`);
    for (const v of [1, 3, 4]) assert.ok(text.includes(`Program Version: ${v}`), `version ${v}`);
    for (const proc of ['TEST', 'LOCK', 'CANCEL', 'UNLOCK', 'GRANTED', 'TEST_MSG', 'LOCK_MSG', 'CANCEL_MSG', 'UNLOCK_MSG', 'GRANTED_MSG', 'TEST_RES', 'LOCK_RES', 'CANCEL_RES', 'UNLOCK_RES', 'GRANTED_RES', 'SHARE', 'UNSHARE', 'NM_LOCK', 'FREE_ALL']) {
      assert.match(text, new RegExp(`Procedure: ${proc} \\(`), proc);
    }
  });
});
