// Descriptors under any traffic: a seeded random mix of every NLM procedure over the wire (valid,
// stale and garbage handles, blocking requests, shares, FREE_ALL, undecodable arguments) on real
// files, then 10k lock/drop cycles through the table: afterwards every description is closed,
// the process holds as many open files as before, and nothing stays locked on any file.
// NFS-Ganesha 4.3, measured here, keeps an owner's descriptor after FREE_ALL (24 → 558–694 fds
// over a 20k-message run); lockdrop must come back to idle.
import assert from 'node:assert/strict';
import { NlmClient, NlmProc } from '../../src/nlm';
import { localLock } from '../support/local-locker';
import { requireNamespaceRoot, startRpcbind } from '../support/netns';
import { knfsdHandle, makeFile, mountTmpfs, openFdCount, startFileServer, type FileServer, type Mounted } from './support';
import { checkIndexes } from '../../src/locks/testing';

const S = '127.0.0.1';

/** xorshift32: the same run every time. */
function rng(seed: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
}

describe('files: descriptors after a fuzz run and 10k lock/drop cycles', function () {
  this.timeout(120_000);
  let fs: Mounted;
  let server: FileServer;
  let stopRpcbind: () => Promise<void>;
  before(async function () {
    requireNamespaceRoot(this);
    stopRpcbind = await startRpcbind();
    fs = mountTmpfs();
    server = await startFileServer([S], [{ path: fs.dir, fsid: 41 }], { options: { grantTimeoutMs: 300, grantRetryInitialMs: 50, grantRetryMaxMs: 100 } });
  });
  after(async () => {
    await server?.close();
    fs?.dispose();
    await stopRpcbind?.();
  });

  it('5,000 random NLM calls from three hosts, then FREE_ALL: back to idle, nothing locked', async () => {
    const paths = Array.from({ length: 8 }, (_, i) => makeFile(fs.dir, `fz${i}`));
    const good = paths.map((p) => knfsdHandle(p, 41));
    const gone = knfsdHandle(makeFile(fs.dir, 'gone'), 41);
    const { unlinkSync } = await import('node:fs');
    unlinkSync(`${fs.dir}/gone`);
    const bad = [gone, Buffer.from('01000101290000', 'hex'), Buffer.alloc(0), Buffer.from('ff'.repeat(64), 'hex')];
    const hosts = await Promise.all(['fuzz-a', 'fuzz-b', 'fuzz-c'].map((callerName, i) =>
      NlmClient.create({ server: { address: S, port: server.port }, transport: i === 1 ? 'tcp' : 'udp', vers: i === 2 ? 3 : 4, callerName, timeoutMs: 3_000, callback: { rpcbind: true, reply: i === 0 ? 'granted' : i === 1 ? 'denied' : 'none' } })));
    const idle = openFdCount();
    const r = rng(0x5eed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
    const answers = new Map<string, number>();
    try {
      for (let i = 0; i < 5_000; i++) {
        const c = pick(hosts);
        const fh = r() < 0.9 ? pick(good) : pick(bad);
        const offset = BigInt(Math.floor(r() * 64));
        const length = r() < 0.2 ? 0n : BigInt(1 + Math.floor(r() * 32));
        const l = { fh, svid: Math.floor(r() * 4), exclusive: r() < 0.5, offset, length };
        const op = Math.floor(r() * 9);
        let status: string;
        if (op <= 2) status = (await c.lock({ ...l, block: r() < 0.3 })).status;
        else if (op === 3) status = (await c.unlock(l)).status;
        else if (op === 4) status = (await c.test(l)).status;
        else if (op === 5) status = (await c.cancel({ ...l, block: true })).status;
        else if (op === 6) status = (await (r() < 0.5 ? c.share({ fh, mode: Math.floor(r() * 4), access: 1 + Math.floor(r() * 3) }) : c.unshare({ fh, mode: 0, access: 1 }))).status;
        else if (op === 7) {
          if (r() < 0.1) await c.freeAll();
          status = 'free_all';
        } else {
          // Arguments that do not decode: GARBAGE_ARGS, never a crash.
          status = await c.raw(pick([NlmProc.LOCK, NlmProc.UNLOCK, NlmProc.TEST]), Buffer.from([1, 2, 3])).then(() => 'accepted', (e: Error) => (/GARBAGE/i.test(e.message) ? 'garbage' : e.message));
        }
        answers.set(status, (answers.get(status) ?? 0) + 1);
      }
      for (const c of hosts) await c.freeAll();
      for (let i = 0; i < 200 && (server.files.stats().waits !== 0 || server.files.stats().open !== 0); i++) await new Promise((res) => setTimeout(res, 10));
      assert.ok((answers.get('granted') ?? 0) > 500 && (answers.get('denied') ?? 0) > 50 && (answers.get('stale_fh') ?? 0) > 20 && (answers.get('garbage') ?? 0) > 100, `a real mix: ${JSON.stringify([...answers])}`);
      assert.deepEqual(checkIndexes(server.table), []);
      assert.equal(server.table.stats().locks, 0);
      assert.deepEqual(server.files.stats().open, 0, 'every description closed');
      assert.equal(openFdCount(), idle, 'the process holds as many files as before');
      for (const p of paths) {
        const probe = localLock(p);
        assert.equal(await probe.outcome, 'locked', `${p} is free on the disk`);
        await probe.release();
      }
    } finally {
      for (const c of hosts) await c.close();
    }
  });

  it('10,000 lock/drop cycles through the table leave no description open', () => {
    const fh = knfsdHandle(makeFile(fs.dir, 'cycles'), 41);
    const idle = openFdCount();
    for (let i = 0; i < 10_000; i++) {
      const owner = { host: `cycle@10.0.0.${i % 7}`, svid: i % 5, oh: Buffer.from([i % 3]) };
      assert.equal(server.table.lock({ fh, owner, exclusive: false, offset: BigInt(i % 50), length: 4n, serverAddress: S }, { block: false, reclaim: false }), 'granted');
      if (i % 3 === 0) server.table.dropByHost(owner.host);
      else if (i % 3 === 1) server.table.dropByServerAddress(S);
      else server.table.unlock({ fh, owner, exclusive: false, offset: 0n, length: 0n, serverAddress: S });
    }
    server.table.dropByServerAddress(S);
    assert.equal(server.files.stats().open, 0);
    assert.equal(openFdCount(), idle);
  });
});
