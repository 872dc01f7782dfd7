// NULL round trips over UDP and TCP on loopback with 1 and 16 concurrent clients: calls/s, p50,
// p99, and the CPU both sides spend per call (on a busy machine the steadier figure). The server
// runs here; the load generator runs in a separate process (so the two do not share one event
// loop), each client its own socket making one call at a time.
// Run: npx tsx bench/rpc-null.ts [seconds-per-case]
import { RpcClient, RpcServer } from '../src/rpc';
import { runGenerator } from './generator';

const PROG = 0x20000077;
const seconds = Number(process.argv[3] ?? process.argv[2] ?? 3);

interface Result { transport: string; clients: number; calls: number; secs: number; p50: number; p99: number; cpu: number }

async function loadGenerator(port: number, transport: 'udp' | 'tcp', clients: number, secs: number): Promise<Result> {
  const latencies: number[] = [];
  const cs = Array.from({ length: clients }, () => new RpcClient({ transport, host: '127.0.0.1', port, timeoutMs: 5000 }));
  await Promise.all(cs.map(async (c) => { for (let i = 0; i < 100; i++) await c.call(PROG, 1, 0); })); // warm up
  process.send!('start');
  const cpu0 = process.cpuUsage();
  const started = process.hrtime.bigint();
  const until = Date.now() + secs * 1000;
  await Promise.all(
    cs.map(async (c) => {
      while (Date.now() < until) {
        const t = process.hrtime.bigint();
        await c.call(PROG, 1, 0);
        latencies.push(Number(process.hrtime.bigint() - t) / 1000);
      }
      c.close();
    }),
  );
  const total = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  process.send!('stop');
  latencies.sort((a, b) => a - b);
  const q = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN;
  return { transport, clients, calls: latencies.length, secs: total, p50: q(0.5), p99: q(0.99), cpu: (cpu.user + cpu.system) / 1e6 / total };
}

async function main(): Promise<void> {
  if (process.argv[2] === 'client') {
    const [port, transport, clients, secs] = process.argv.slice(3);
    process.send!(await loadGenerator(Number(port), transport as 'udp' | 'tcp', Number(clients), Number(secs)));
    return;
  }
  const server = new RpcServer();
  server.register({ prog: PROG, vers: 1, procedures: new Map([[0, { name: 'NULL', decodeArgs: () => undefined, encodeResult: () => undefined, handle: () => undefined, idempotent: true }]]) });
  await server.addAddress('127.0.0.1');
  console.log(`NULL round trips on 127.0.0.1:${server.port}, ${seconds} s per case, load generator in a separate process`);
  for (const transport of ['udp', 'tcp'] as const) {
    for (const clients of [1, 16]) {
      const r = await runGenerator<Result>(__filename, ['client', String(server.port), transport, String(clients), String(seconds)]);
      const serverCpu = r.serverCpu;
      const rate = r.calls / r.secs;
      console.log(`${transport} ${String(clients).padStart(2)} client(s): ${Math.round(rate).toLocaleString('en').padStart(7)} calls/s  p50 ${r.p50.toFixed(0)} µs  p99 ${r.p99.toFixed(0)} µs  server CPU ${(serverCpu * 100).toFixed(0)}% ${(serverCpu * 1e6 / rate).toFixed(1)} µs/call  generator CPU ${(r.cpu * 100).toFixed(0)}% ${(r.cpu * 1e6 / rate).toFixed(1)} µs/call`);
    }
  }
  await server.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
