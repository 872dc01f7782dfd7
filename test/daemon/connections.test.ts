// lockdropd under a connection flood (issue 11, item 5): 1,030 idle TCP connections from one
// address to the NLM port, with the default limits, do not lock out a client from another
// address; the daemon logs one warning and counts the limit in /metrics.
import assert from 'node:assert/strict';
import net from 'node:net';
import { NlmClient } from '../../src/nlm';
import { requireNamespaceRoot } from '../support/netns';
import { ensureBuilt, spawnDaemon, type DaemonProcess } from './harness';

const FLOODER = '127.0.0.2';
const NEWCOMER = '127.0.0.3';

describe('daemon: connection limits', function () {
  this.timeout(60_000);
  let d: DaemonProcess;
  const sockets: net.Socket[] = [];

  before(function () {
    requireNamespaceRoot(this);
    ensureBuilt();
  });
  after(() => {
    for (const s of sockets) s.destroy();
    d?.cleanup();
  });

  it('1,030 idle connections from one address leave the NLM port open to another address', async () => {
    d = spawnDaemon(['--metrics', '127.0.0.1:0']);
    const started = await d.started();
    const port = started.nlmPort as number;
    for (let i = 0; i < 1030; i += 128) {
      sockets.push(...await Promise.all(Array.from({ length: Math.min(128, 1030 - i) }, () => new Promise<net.Socket>((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port, localAddress: FLOODER });
        s.on('error', () => undefined);
        s.once('connect', () => resolve(s));
        s.once('close', () => resolve(s));
      }))));
    }
    const c = await NlmClient.create({ server: { address: '127.0.0.1', port }, transport: 'tcp', vers: 4, callerName: 'newcomer', source: NEWCOMER, timeoutMs: 3_000 });
    try {
      assert.equal((await c.lock({ fh: Buffer.alloc(16, 1), svid: 1 })).status, 'granted');
    } finally {
      await c.close();
    }
    const warning = await d.waitLog((l) => l.part === 'rpc' && /per-peer limit is 64/.test(l.msg));
    assert.equal(warning.level, 40);
    assert.equal(warning.peer, FLOODER);
    assert.equal(d.logs.filter((l) => l.part === 'rpc' && l.level === 40).length, 1, 'rate-limited: one line for the burst');
    const text = await (await fetch(`http://127.0.0.1:${started.metricsPort}/metrics`)).text();
    const m = /^lockdrop_rpc_connection_limit_total\{scope="peer",action="closed-idle"\} (\d+)$/m.exec(text);
    assert.ok(m, text.split('\n').filter((l) => l.includes('connection_limit')).join('\n'));
    assert.equal(Number(m[1]), 1030 - 64);
  });
});
