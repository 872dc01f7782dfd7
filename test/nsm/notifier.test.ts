// SM_NOTIFY out through the real sender: hosts found through their portmapper, retried with
// backoff for a bounded time, many at once under a limit, and stopped when the address leaves.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { NO_REPLY, PMAP_PROG, PMAP_VERS, PMAPPROC, RpcServer, type CallContext, type Procedure } from '../../src/rpc';
import { decodeStatChge, encodeVoid, Nsm, NsmStore, NSM_PROGRAM, NSM_VERSION, RpcNsmSender, SM_NOTIFY, type StatChge } from '../../src/nsm';
import pino, { type Logger } from 'pino';
import { requireNamespaceRoot } from '../support/netns';
import { sleep, waitFor } from './support';

const VIP = '127.89.0.1';
const PMAP_PORT = 1112;

/** Light peers on 127.89.1.x: a portmapper on PMAP_PORT and a statd; `behaviour` decides per host. */
async function peers(hosts: string[], behaviour: (host: string) => 'answer' | 'silent' | number) {
  const notified: Array<{ host: string; from: string; args: StatChge }> = [];
  const getports = new Map<string, number>();
  const inFlight = new Set<string>(); // hosts with a GETPORT being answered (retransmissions count once)
  let maxInFlight = 0;
  const statd = new RpcServer();
  statd.register({ prog: NSM_PROGRAM, vers: NSM_VERSION, procedures: new Map([[SM_NOTIFY, {
    name: 'SM_NOTIFY', decodeArgs: decodeStatChge, encodeResult: encodeVoid,
    handle: (args, ctx: CallContext) => void notified.push({ host: ctx.local.address, from: ctx.peer.address, args }),
  } satisfies Procedure<StatChge, undefined>]]) });
  const pmap = new RpcServer({ duplicateCacheSize: 0 });
  pmap.register({ prog: PMAP_PROG, vers: PMAP_VERS, procedures: new Map([[PMAPPROC.GETPORT, {
    name: 'GETPORT', decodeArgs: (r) => r.rest(), encodeResult: (w, p: number) => void w.uint(p),
    handle: async (_a, ctx: CallContext) => {
      const h = ctx.local.address;
      getports.set(h, (getports.get(h) ?? 0) + 1);
      const b = behaviour(h);
      if (b === 'silent') return NO_REPLY;
      if (typeof b === 'number') {
        inFlight.add(h);
        maxInFlight = Math.max(maxInFlight, inFlight.size);
        await sleep(b);
        inFlight.delete(h);
      }
      return statd.port;
    },
  } satisfies Procedure<Buffer, number | typeof NO_REPLY>]]) });
  pmap.listen({ port: PMAP_PORT });
  for (const h of hosts) {
    await statd.addAddress(h);
    await pmap.addAddress(h);
  }
  return {
    notified, getports, maxInFlight: () => maxInFlight,
    close: async () => {
      await statd.close();
      await pmap.close();
    },
  };
}

describe('nsm notify sender', function () {
  this.timeout(30_000);
  let dir: string;
  before(function () { requireNamespaceRoot(this); });
  beforeEach(() => { dir = mkdtempSync(path.join(tmpdir(), 'nsm-notify-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  async function nsmWith(hosts: string[], retransmitMs = 100, log?: Logger): Promise<Nsm> {
    const nsm = new Nsm({ store: new NsmStore(dir), sender: new RpcNsmSender({ portmapperPort: PMAP_PORT, backoffMs: 200, attemptTimeoutMs: 300, retransmitMs, log }) });
    for (const [i, h] of hosts.entries()) await nsm.monitor({ key: `c${i}@${h}`, callerName: `c${i}`, address: h }, VIP);
    return nsm;
  }

  it('retries a silent host with backoff until the time runs out, then reports it; a late one is still reached; each host\'s lines name it', async () => {
    const hosts = ['127.89.1.1', '127.89.1.2', '127.89.1.3'];
    let lateUp = false;
    setTimeout(() => (lateUp = true), 800);
    const p = await peers(hosts, (h) => (h === '127.89.1.1' ? 'answer' : h === '127.89.1.2' ? (lateUp ? 'answer' : 'silent') : 'silent'));
    try {
      const lines: Array<{ host?: string; msg: string }> = [];
      const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as { host?: string; msg: string }) });
      const nsm = await nsmWith(hosts, 100, log);
      const t0 = Date.now();
      const rep = await nsm.notify(VIP, { timeoutMs: 2500 });
      const took = Date.now() - t0;
      assert.deepEqual(rep.notified.sort(), ['127.89.1.1', '127.89.1.2']);
      assert.deepEqual(rep.failed, ['127.89.1.3']);
      assert.ok(took >= 2400 && took < 4000, `took ${took} ms`);
      // Attempts of 300 ms (2 or 3 datagrams each), then waits of 200, 400, 800 ms: a handful, not a flood and not one.
      const sent = p.getports.get('127.89.1.3') ?? 0;
      assert.ok(sent >= 6 && sent <= 15, `GETPORT datagrams to the silent host: ${sent}`);
      assert.equal(nsm.records(VIP).length, 3, 'records are kept, reached or not');
      for (const n of p.notified) assert.equal(n.from, VIP);
      const hostsOf = (msg: string): string[] => [...new Set(lines.filter((l) => l.msg === msg).map((l) => l.host!))].sort();
      assert.deepEqual(hostsOf('nsm: SM_NOTIFY answered'), ['127.89.1.1', '127.89.1.2']);
      assert.deepEqual(hostsOf('nsm: SM_NOTIFY attempt failed'), ['127.89.1.2', '127.89.1.3']);
      await nsm.close();
    } finally {
      await p.close();
    }
  });

  it('notifies many hosts in parallel, never more than the concurrency limit at once', async () => {
    const hosts = Array.from({ length: 24 }, (_, i) => `127.89.2.${i + 1}`);
    const p = await peers(hosts, () => 100);
    try {
      const nsm = await nsmWith(hosts, 250); // no retransmission while the peer takes its 100 ms
      const t0 = Date.now();
      const rep = await nsm.notify(VIP, { timeoutMs: 10_000, concurrency: 6 });
      assert.equal(rep.notified.length, 24);
      assert.ok(p.maxInFlight() <= 6 && p.maxInFlight() >= 4, `max in flight ${p.maxInFlight()}`);
      assert.ok(Date.now() - t0 >= 400, 'four waves of 100 ms at least');
      await nsm.close();
    } finally {
      await p.close();
    }
  });

  it('stops at once when the address leaves (stopMonitoring), keeping the records', async () => {
    const hosts = ['127.89.3.1'];
    const p = await peers(hosts, () => 'silent');
    try {
      const nsm = await nsmWith(hosts);
      const t0 = Date.now();
      const pending = nsm.notify(VIP, { timeoutMs: 20_000 });
      await waitFor('the first GETPORT to the host', () => p.getports.has('127.89.3.1'));
      nsm.stopMonitoring(VIP);
      const rep = await pending;
      assert.ok(Date.now() - t0 < 2000);
      assert.deepEqual(rep.failed, hosts);
      assert.equal((await new NsmStore(dir).load(VIP)).records.length, 1);
    } finally {
      await p.close();
    }
  });

  it('retransmits a host\'s first exchange after 200 ms: a lost first answer costs a fifth of a second, not a second', async () => {
    const hosts = ['127.89.5.1'];
    const p = await peers(hosts, () => ((p.getports.get('127.89.5.1') ?? 0) === 1 ? 'silent' : 'answer')); // the first answer is lost
    try {
      const nsm = new Nsm({ store: new NsmStore(dir), sender: new RpcNsmSender({ portmapperPort: PMAP_PORT }) }); // retransmitMs: the 1 s default
      await nsm.monitor({ key: 'a@127.89.5.1', callerName: 'a', address: '127.89.5.1' }, VIP);
      const rep = await nsm.notify(VIP, { timeoutMs: 5_000 });
      assert.deepEqual(rep.notified, hosts);
      assert.equal(p.getports.get('127.89.5.1'), 2);
      assert.ok(rep.ms >= 190 && rep.ms < 900, `took ${rep.ms} ms: the retransmission came before the 1 s default`);
      await nsm.close();
    } finally {
      await p.close();
    }
  });

  it('reports every host when the server address cannot be bound (it is not local)', async () => {
    const nsm = new Nsm({ store: new NsmStore(dir), sender: new RpcNsmSender() });
    await nsm.monitor({ key: 'a@127.89.4.1', callerName: 'a', address: '127.89.4.1' }, '10.255.255.1');
    const rep = await nsm.notify('10.255.255.1', { timeoutMs: 5000 });
    assert.deepEqual(rep.failed, ['127.89.4.1']);
  });
});
