// Watch benchmarks: pipeline throughput on the recorded 1,000-change burst, and the latency
// from `ip addr del` to the AddressEvent through netlink and through poll.
// Run as root: npx tsx bench/watch.ts  (latency runs in a network namespace it creates).
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { count, filter, firstValueFrom, lastValueFrom, share, timeout, type Observable } from 'rxjs';
import { addonStatus, openRtnetlink } from '../src/addon';
import { addressEvents, decodeDatagram, netlink, netlinkSource, nowMs, pollSource, readTrace, replaySource, watchAddresses, type AddressEvent } from '../src/watch';
import { parseAddress } from '../src/net';

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
const fmt = (xs: number[]): string => `p50 ${quantile(xs, 0.5).toFixed(2)} ms, p99 ${quantile(xs, 0.99).toFixed(2)} ms (n=${xs.length})`;
const run = (cmd: string, args: string[]): Promise<void> => new Promise((resolve, reject) => {
  spawn(cmd, args, { stdio: 'ignore' }).on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')}: ${code}`))));
});

async function throughput(): Promise<void> {
  const trace = readTrace(join(__dirname, '..', 'test', 'fixtures', 'netlink', 'burst-1000.pcap'));
  const changes = 1000;
  const rates: number[] = [];
  for (let i = 0; i < 30; i++) {
    const t0 = performance.now();
    const n = await lastValueFrom(replaySource(trace, { pace: 'fast' }).pipe(addressEvents(), count()));
    const ms = performance.now() - t0;
    if (n !== 1000) throw new Error(`expected 1000 events, got ${n}`);
    if (i >= 5) rates.push(changes / (ms / 1000)); // after warm-up
  }
  const t0 = performance.now();
  let msgs = 0;
  for (let i = 0; i < 30; i++) for (const r of trace) msgs += decodeDatagram(r.datagram).length;
  const decodeRate = msgs / ((performance.now() - t0) / 1000);
  console.log(`pipeline throughput, burst-1000 replayed as fast as possible (decode ▸ table ▸ state machine ▸ filter): median ${Math.round(quantile(rates, 0.5))} events/s, min ${Math.round(Math.min(...rates))} (25 runs)`);
  console.log(`netlink decode alone: ${Math.round(decodeRate)} messages/s`);
}

/**
 * Times the removal of an address → the matching down event. The removal is `ip addr del`
 * (spawned, its start-up included), or with `direct` our own RTM_DELADDR request sent on a
 * netlink socket (kernel + delivery + pipeline only).
 */
async function latency(name: string, events: Observable<AddressEvent>, dev: string, runs: number, opts: { direct?: { ifindex: number; send: (req: Buffer) => Promise<Buffer[]> }; phaseMs?: number } = {}): Promise<number[]> {
  const { direct } = opts;
  const out: number[] = [];
  const inPipeline: number[] = [];
  const shared = events.pipe(share());
  const sub = shared.subscribe(); // keep the source hot between runs
  for (let i = 0; i < runs; i++) {
    const addr = `10.90.${i >> 8}.${(i & 255) + 1}`;
    execFileSync('ip', ['addr', 'add', `${addr}/32`, 'dev', dev]);
    await firstValueFrom(shared.pipe(filter((e) => e.type === 'up' && e.address === addr), timeout(10000)));
    // A poller saw the address at one of its ticks: remove it at a random phase of the next period.
    if (opts.phaseMs) await new Promise((r) => setTimeout(r, Math.random() * opts.phaseMs!));
    const down = firstValueFrom(shared.pipe(filter((e) => e.type === 'down' && e.address === addr), timeout(10000)));
    const t0 = nowMs();
    if (direct) {
      const [ack] = await direct.send(netlink.encodeAddressMessage({ op: 'del', local: parseAddress(addr), prefixLen: 32, ifindex: direct.ifindex, request: true, seq: i + 1 }));
      if (decodeDatagram(ack)[0]?.kind !== 'error' || (decodeDatagram(ack)[0] as { errno: number }).errno !== 0) throw new Error('RTM_DELADDR refused');
    } else {
      await run('ip', ['addr', 'del', `${addr}/32`, 'dev', dev]);
    }
    const e = await down;
    out.push(e.detectedAt - t0);
    inPipeline.push(e.detectedAt - e.at);
  }
  sub.unsubscribe();
  console.log(`ip addr del → AddressEvent down, ${name}: ${fmt(out)}; from the source's observation to the event: ${fmt(inPipeline)}`);
  return out;
}

async function inNamespace(): Promise<void> {
  execFileSync('sh', ['-ec', 'ip link set lo up; ip link add lb0 type veth peer name lb0p; ip link set lb0p up; ip link set lb0 up']);
  await new Promise((r) => setTimeout(r, 300));
  const spawnCost: number[] = [];
  for (let i = 0; i < 50; i++) {
    const t0 = nowMs();
    await run('ip', ['-V']);
    spawnCost.push(nowMs() - t0);
  }
  console.log(`(for scale: spawning \`ip -V\` alone: ${fmt(spawnCost)})`);
  const floating = ['10.90.0.0/16'];
  const addon = addonStatus();
  if (addon.available) {
    const sock = openRtnetlink();
    const ifindex = (JSON.parse(execFileSync('ip', ['-j', 'link', 'show', 'dev', 'lb0'], { encoding: 'utf8' })) as Array<{ ifindex: number }>)[0].ifindex;
    await latency('netlink source', watchAddresses([netlinkSource(sock)], { floating }), 'lb0', 200);
    await latency('netlink source, in-process RTM_DELADDR request (no ip start-up)', watchAddresses([netlinkSource(sock)], { floating }), 'lb0', 200, { direct: { ifindex, send: sock.dump } });
    sock.close();
  } else {
    console.log(`netlink source: skipped (${addon.reason})`);
  }
  for (const interval of [100, 1000]) {
    await latency(`poll source alone (every ${interval} ms)`, watchAddresses([pollSource({ intervalMs: interval })], { floating }), 'lb0', interval === 100 ? 50 : 20, { phaseMs: interval });
  }
}

async function main(): Promise<void> {
  if (process.env.LOCKDROP_BENCH_NS === '1') return inNamespace();
  await throughput();
  // The latency part needs its own network namespace (removed when it exits).
  const r = spawnSync('unshare', ['--net', '--', 'env', 'LOCKDROP_BENCH_NS=1', process.execPath, ...process.execArgv, __filename], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error('latency run failed (it needs root, for unshare --net)');
}

main().catch((err) => { console.error(err); process.exit(1); });
