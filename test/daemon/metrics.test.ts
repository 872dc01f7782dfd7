// /metrics: valid Prometheus text, and the counters move with real traffic: NLM requests,
// locks per server address, an address removed (drop with its trigger and latency), an
// operator's drop, address events by source; per-address, rpcbind and source gauges, build
// info, Node's own metrics; /healthz. And the drop's log line: no field of pino's own taken.
import assert from 'node:assert/strict';
import { NlmClient } from '../../src/nlm';
import { addonStatus } from '../../src/addon';
import { ip, requireNamespaceRoot, sh, uniqueName } from '../support/netns';
import { ensureBuilt, spawnDaemon, type DaemonProcess } from './harness';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the text exposition format strictly enough to catch malformed output. */
function parsePrometheus(text: string): { samples: Sample[]; types: Map<string, string> } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
  for (const [i, line] of text.split('\n').entries()) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
      assert.ok(m && metricName.test(m[2]!), `line ${i + 1}: bad comment ${line}`);
      if (m[1] === 'TYPE') {
        assert.ok(['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(m[3]!), `line ${i + 1}: bad type ${m[3]}`);
        types.set(m[2]!, m[3]!);
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/.exec(line);
    assert.ok(m, `line ${i + 1}: bad sample ${line}`);
    const labels: Record<string, string> = {};
    if (m[3]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;
      let pos = 0;
      while (pos < m[3].length) {
        re.lastIndex = pos;
        const l = re.exec(m[3]);
        assert.ok(l, `line ${i + 1}: bad labels ${m[3]}`);
        labels[l[1]!] = l[2]!;
        pos = re.lastIndex;
      }
    }
    // Prometheus reads values with Go's ParseFloat: NaN and Inf in any case (prom-client writes "Nan").
    const value = /^\+?inf$/i.test(m[4]!) ? Infinity : /^-inf$/i.test(m[4]!) ? -Infinity : Number(m[4]);
    assert.ok(!Number.isNaN(value) || /^nan$/i.test(m[4]!), `line ${i + 1}: bad value ${m[4]}`);
    const family = m[1]!.replace(/_(bucket|sum|count)$/, '');
    assert.ok(types.has(m[1]!) || types.has(family), `line ${i + 1}: ${m[1]} has no TYPE`);
    samples.push({ name: m[1]!, labels, value });
  }
  return { samples, types };
}

const value = (samples: Sample[], name: string, labels: Record<string, string> = {}): number =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((n, s) => n + s.value, 0);

describe('daemon: /metrics', function () {
  this.timeout(60_000);
  let d: DaemonProcess;
  let url: string;
  const VIP = '10.77.0.5';
  let iface: { name: string; dispose(): void } | undefined;
  const scrape = async () => {
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    return parsePrometheus(await res.text());
  };

  before(async function () {
    requireNamespaceRoot(this);
    ensureBuilt();
    const [a, b] = [uniqueName('ldm'), uniqueName('ldm')];
    ip('link', 'add', a, 'type', 'veth', 'peer', 'name', b);
    ip('link', 'set', a, 'up');
    ip('link', 'set', b, 'up');
    ip('addr', 'add', `${VIP}/32`, 'dev', a);
    iface = { name: a, dispose: () => void sh('ip', ['link', 'del', a], { allowFail: true }) };
    const sources = addonStatus().available ? 'netlink,bpf,poll' : 'poll';
    d = spawnDaemon(['--metrics', '127.0.0.1:0', '--sources', sources, '--address', '10.77.0.0/16']);
    const started = await d.started();
    url = `http://127.0.0.1:${started.metricsPort}/metrics`;
    await d.waitLog((l) => l.address === VIP && / arrived/.test(l.msg));
  });
  after(() => {
    d?.cleanup();
    iface?.dispose();
  });

  it('serves valid Prometheus text with every lockdrop family', async () => {
    const { types } = await scrape();
    for (const [name, type] of Object.entries({
      lockdrop_locks: 'gauge',
      lockdrop_monitors: 'gauge',
      lockdrop_journal_entries: 'gauge',
      lockdrop_reclaim_awaiting_locks: 'gauge',
      lockdrop_reclaim_total_locks: 'gauge',
      lockdrop_kept_refusals_total: 'counter',
      lockdrop_blocked_requests: 'gauge',
      lockdrop_grace_periods_active: 'gauge',
      lockdrop_rpc_calls_total: 'counter',
      lockdrop_rpc_connection_limit_total: 'counter',
      lockdrop_nlm_requests_total: 'counter',
      lockdrop_drops_total: 'counter',
      lockdrop_dropped_locks_total: 'counter',
      lockdrop_drop_duration_seconds: 'histogram',
      lockdrop_notifications_total: 'counter',
      lockdrop_address_events_total: 'counter',
      lockdrop_source_overflows_total: 'counter',
      lockdrop_build_info: 'gauge',
      lockdrop_ready: 'gauge',
      lockdrop_address_present: 'gauge',
      lockdrop_address_draining: 'gauge',
      lockdrop_address_grace_end_timestamp_seconds: 'gauge',
      lockdrop_rpcbind_registered: 'gauge',
      lockdrop_source_active: 'gauge',
      process_cpu_user_seconds_total: 'counter',
      process_resident_memory_bytes: 'gauge',
      nodejs_eventloop_lag_seconds: 'gauge',
      nodejs_heap_size_used_bytes: 'gauge',
    })) assert.equal(types.get(name), type, name);
    const { samples } = await scrape();
    const build = samples.find((x) => x.name === 'lockdrop_build_info');
    assert.deepEqual([build?.labels, build?.value], [{ version: (require('../../package.json') as { version: string }).version }, 1], 'no label named node: the Node.js version is nodejs_version_info');
    assert.equal(samples.find((x) => x.name === 'nodejs_version_info')?.labels.version, process.version);
    // Prometheus naming: a Unix time is _timestamp_seconds.
    for (const x of samples) if (/grace_end/.test(x.name)) assert.match(x.name, /_timestamp_seconds$/);
    assert.equal(value(samples, 'lockdrop_ready'), 1);
    assert.equal(value(samples, 'lockdrop_address_present', { address: VIP }), 1);
    assert.equal(value(samples, 'lockdrop_address_draining', { address: VIP }), 0);
    assert.equal(value(samples, 'lockdrop_rpcbind_registered'), 0, 'the harness runs with --rpcbind off');
    assert.equal(value(samples, 'lockdrop_source_active', { source: 'poll' }), 1);
    const res = await fetch(url.replace('/metrics', '/other'));
    assert.equal(res.status, 404);
    const health = await fetch(url.replace('/metrics', '/healthz'));
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: 'ok', ready: true, rpcbind: false, addresses: [VIP], sourcesOff: [] });
  });

  it('counters move with the traffic: requests, locks per address, drops by trigger', async () => {
    const before = (await scrape()).samples;
    assert.ok(value(before, 'lockdrop_address_events_total', { type: 'up' }) >= 1);
    const c = await NlmClient.create({ server: { address: VIP, port: d.logs.find((x) => x.nlmPort)!.nlmPort as number }, transport: 'tcp', vers: 4, callerName: 'metrics-client' });
    try {
      const fh = Buffer.from('0100010109000000aa000000', 'hex');
      for (let svid = 1; svid <= 3; svid++) assert.equal((await c.lock({ fh, svid, exclusive: false, offset: BigInt(svid * 10), length: 1n })).status, 'granted');
      assert.equal((await c.lock({ fh, svid: 9, exclusive: true, offset: 10n, length: 1n })).status, 'denied');
      const mid = (await scrape()).samples;
      assert.equal(value(mid, 'lockdrop_nlm_requests_total', { procedure: 'LOCK', status: 'granted' }) - value(before, 'lockdrop_nlm_requests_total', { procedure: 'LOCK', status: 'granted' }), 3);
      assert.equal(value(mid, 'lockdrop_nlm_requests_total', { procedure: 'LOCK', status: 'denied' }), 1);
      assert.ok(value(mid, 'lockdrop_rpc_calls_total', { program: 'nlm', procedure: 'LOCK', status: 'SUCCESS', transport: 'tcp' }) >= 4);
      assert.equal(value(mid, 'lockdrop_locks', { address: VIP }), 3);
      assert.equal(value(mid, 'lockdrop_monitors', { address: VIP }), 1);

      // The address leaves: its locks are dropped, counted under the source that saw it first.
      ip('addr', 'del', `${VIP}/32`, 'dev', iface!.name);
      const gone = await d.waitLog((l) => l.address === VIP && / removed/.test(l.msg));
      // The line keeps pino's pid (the daemon's); who removed the address, when the probes saw it, is `by`.
      assert.equal(gone.pid, d.child.pid);
      if (gone.by !== undefined) assert.equal((gone.by as { comm: string }).comm, 'ip');
      assert.match(String(gone.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.match(gone.msg, /dropped 3 locks of 1 client (in|[\d.]+ ms after the poll detected it)/);
      const after = (await scrape()).samples;
      const trigger = String(gone.source);
      assert.equal(value(after, 'lockdrop_drops_total', { trigger }), 1);
      assert.equal(value(after, 'lockdrop_dropped_locks_total', { trigger }), 3);
      assert.equal(value(after, 'lockdrop_drop_duration_seconds_count', { trigger }), 1);
      assert.equal(value(after, 'lockdrop_locks', { address: VIP }), 0);
      assert.equal(value(after, 'lockdrop_address_present', { address: VIP }), 0);
      assert.ok(value(after, 'lockdrop_address_events_total', { type: 'down', source: trigger }) >= 1);

      // The operator drops: trigger admin.
      const local = await NlmClient.create({ server: { address: '127.0.0.1', port: d.logs.find((x) => x.nlmPort)!.nlmPort as number }, transport: 'tcp', vers: 4, callerName: 'metrics-local' });
      try {
        assert.equal((await local.lock({ fh, svid: 1, offset: 0n, length: 1n })).status, 'granted');
      } finally {
        await local.close();
      }
      assert.equal(value((await scrape()).samples, 'lockdrop_address_present', { address: '127.0.0.1' }), 1, 'an address the node serves as its own is present');
      assert.equal(d.ctl(['drop', '--client', 'metrics-local']).code, 0);
      assert.equal(value((await scrape()).samples, 'lockdrop_drops_total', { trigger: 'admin' }), 1);
    } finally {
      await c.close();
    }
  });
});
