// Durability end to end: SIGKILL during a burst of SM_MON loses no record whose reply was sent,
// and a restart bumps the state number and notifies every recorded host, from the address.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { RpcClient, RpcServer, PMAP_PROG, PMAP_VERS, PMAPPROC, type CallContext, type Procedure } from '../../src/rpc';
import {
  decodeStatChge, encodeMon, encodeSmName, encodeVoid, SM_STAT, Nsm, NsmStore, NSM_PROGRAM, NSM_VERSION, RpcNsmSender, SM_MON, STAT_SUCC, decodeSmStatRes,
  type StatChge,
} from '../../src/nsm';
import { requireNamespaceRoot } from '../support/netns';

const hostName = (i: number): string => `10.${(i >> 8) & 255}.${i & 255}.1`;

/** lockdrop's statd in a child process on 127.0.0.1 (statd-child.ts). */
async function startChild(dir: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['--require', 'tsx/cjs', path.join(__dirname, 'statd-child.ts'), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once('data', (d) => resolve(Number(String(d).trim())));
    child.once('exit', (c) => reject(new Error(`child exited ${c}`)));
  });
  return { child, port };
}

describe('nsm durability', function () {
  this.timeout(60_000);
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(path.join(tmpdir(), 'nsm-dur-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('SIGKILL during a burst of 1k SM_MON loses none of the records whose replies were sent', async () => {
    const { child, port } = await startChild(dir);
    const exited = new Promise((r) => child.once('exit', r));
    const client = new RpcClient({ transport: 'udp', host: '127.0.0.1', port, timeoutMs: 20_000, retransmitMs: 1000 });
    const acked = new Set<string>();
    let killedAt = -1;
    const calls = Array.from({ length: 1000 }, (_, i) => client.call(NSM_PROGRAM, NSM_VERSION, SM_MON,
      (w) => encodeMon(w, { monId: { monName: hostName(i), myId: { myName: 'test', myProg: 100021, myVers: 4, myProc: 16 } }, priv: Buffer.alloc(16, i & 255) }),
      decodeSmStatRes).then((res) => {
      assert.equal(res.res, STAT_SUCC);
      if (killedAt < 0) acked.add(hostName(i));
      if (acked.size >= 300 && killedAt < 0) {
        killedAt = acked.size;
        child.kill('SIGKILL');
      }
    }, () => undefined));
    await exited;
    client.close();
    await Promise.all(calls);
    assert.ok(killedAt >= 300 && killedAt < 1000, `killed after ${killedAt} replies`);
    const loaded = await new NsmStore(dir).load('127.0.0.1');
    assert.deepEqual(loaded.skipped, []);
    const names = new Set(loaded.records.map((r) => r.monName));
    const lost = [...acked].filter((n) => !names.has(n));
    assert.deepEqual(lost, [], `${lost.length} acknowledged records lost`);
    // Records of calls in flight may or may not be there, but each one there is whole.
    for (const r of loaded.records) assert.equal(r.callbacks.length, 1);
    // And the statd starts again on that directory and answers.
    const again = await startChild(dir);
    try {
      const c = new RpcClient({ transport: 'udp', host: '127.0.0.1', port: again.port, timeoutMs: 5000 });
      const res = await c.call(NSM_PROGRAM, NSM_VERSION, SM_STAT, (w) => encodeSmName(w, 'x'), decodeSmStatRes);
      c.close();
      assert.equal(res.res, STAT_SUCC);
    } finally {
      again.child.kill('SIGKILL');
    }
  });

  it('a restart bumps the state number and notifies every recorded host, from the address', async function () {
    requireNamespaceRoot(this);
    // Every 127/8 address is local: the server address and the hosts need no interface.
    const VIP = '127.88.0.1';
    const hosts = Array.from({ length: 20 }, (_, i) => `127.88.1.${i + 1}`);
    // A light peer on every host address: a portmapper (on port 1111, as the sender is told) and a statd.
    const seen: Array<{ to: string; from: string; fromPort: number; args: StatChge }> = [];
    const peer = new RpcServer();
    const statd: Procedure<StatChge, undefined> = {
      name: 'SM_NOTIFY', decodeArgs: decodeStatChge, encodeResult: encodeVoid,
      handle: (args, ctx: CallContext) => { seen.push({ to: ctx.local.address, from: ctx.peer.address, fromPort: ctx.peer.port, args }); return undefined; },
    };
    peer.register({ prog: NSM_PROGRAM, vers: NSM_VERSION, procedures: new Map([[6, statd]]) });
    for (const h of hosts) await peer.addAddress(h);
    const pmap = new RpcServer();
    pmap.register({ prog: PMAP_PROG, vers: PMAP_VERS, procedures: new Map([[PMAPPROC.GETPORT, {
      name: 'GETPORT', decodeArgs: (r) => r.rest(), encodeResult: (w, p: number) => void w.uint(p), handle: () => peer.port,
    } satisfies Procedure<Buffer, number>]]) });
    pmap.listen({ port: 1111 });
    for (const h of hosts) await pmap.addAddress(h);
    try {
      const first = new Nsm({ store: new NsmStore(dir) });
      const s1 = await first.bumpState(VIP);
      for (const [i, h] of hosts.entries()) await first.monitor({ key: `c${i}@${h}`, callerName: `c${i}`, address: h }, VIP);
      await first.close();

      // The restart: a new process reads the directory, bumps, notifies.
      const nsm = new Nsm({ store: new NsmStore(dir), sender: new RpcNsmSender({ portmapperPort: 1111 }), config: () => ({ monNames: { [VIP]: 'server.example' } }) });
      const act = await nsm.activate(VIP);
      assert.equal(act.records, hosts.length);
      const s2 = await nsm.bumpState(VIP);
      assert.equal(s2, s1 + 2);
      const rep = await nsm.notify(VIP, { timeoutMs: 5000 });
      assert.deepEqual(rep.failed, []);
      assert.deepEqual(rep.notified.sort(), [...hosts].sort());
      assert.deepEqual(seen.map((s) => s.to).sort(), [...hosts].sort());
      for (const s of seen) {
        assert.equal(s.from, VIP, 'SM_NOTIFY leaves from the server address');
        assert.ok(s.fromPort < 1024, `from a reserved port, as sm-notify (root): ${s.fromPort}`);
        assert.deepEqual(s.args, { monName: 'server.example', state: s2 });
      }
      await nsm.close();
    } finally {
      await peer.close();
      await pmap.close();
    }
  });
});
