// LOCK+UNLOCK pairs per second through the whole NLM server (RpcServer + NLM service + LockTable)
// on loopback, over UDP and TCP, with 1, 8 and 64 concurrent owners, with the locks in memory and
// on real files (a tmpfs export, knfsd handles, the files part as lockdropd opens it), and in memory
// with the lock journal (issue 19: every grant durable before its reply, group commit) on a tmpfs
// and on an ext4 image, one row of each back to back against the same generator. The load generator is a separate process that
// pre-encodes its calls and patches only the xid, so that it is not the bottleneck; both processes
// report their CPU use. LOCK and UNLOCK each count as one RPC. Each owner locks a file of its own.
//
//   npx tsx bench/nlm-lock.ts [seconds per run, default 3] [udp|tcp] [owners] [memory|files|journal-tmpfs|journal-ext4|journal-etcd] [--rounds=N]
//   (the positional ones after the first pick rows, e.g. for a profile; --rounds runs the rows N times in turn and prints
//   the medians, each journal row's ratio taken to the memory row of its own round: steadier on a shared machine)
//
// journal-etcd: the journal on a three-member etcd (Debian's etcd-server) on loopback, started here.
//
// Real files need root (the benchmark runs itself again in a private mount namespace, for the
// tmpfs); without it only the memory rows run.
//
//   npx tsx bench/nlm-lock.ts serve [ADDRESS]   (the memory server alone, as bench/nlm-vs-ganesha.ts runs it)
//   bash bench/profile-tcp.sh OWNERS SECONDS [plain|strace|prof|cpuprof]   (the memory server alone in its process, for
//   strace -p and the profilers: `serve` prints {port, pid} and, at each SIGUSR2, the RPCs handled, its read/write
//   syscalls and CPU; `drive` runs the generator against it, signalling the server when it starts and stops measuring)
import dgram from 'node:dgram';
import { execFileSync, fork } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { LockJournal } from '../src/daemon/journal';
import { LockTable } from '../src/locks';
import { DirectoryStore, EtcdStore } from '../src/store';
import { EtcdCluster, hasEtcd } from '../test/store/etcd-cluster';
import { AUTH_SYS, RpcServer, credentialToOpaqueAuth, encodeRecord, NULL_AUTH, RecordDecoder, writeCallHeader } from '../src/rpc';
import { XdrWriter } from '../src/xdr';
import { realFilesUnavailable, reexecInNamespaces, tmpfsExport, type BenchExport } from './real-files';
import { runGenerator } from './generator';
import { createNlmService, encodeLockArgs, encodeUnlockArgs, NLM_PROG, NlmProc, type NlmLock } from '../src/nlm';

type Transport = 'udp' | 'tcp';
interface GenResult { rpcs: number; seconds: number; p50: number; p99: number; cpu: number; retransmits: number; errors: number }

const HOST = '127.0.0.1';

// ---- load generator (child process) ----

function message(proc: number, owner: number, fh: Buffer, transport: Transport): Buffer {
  const w = new XdrWriter(256);
  const cred = credentialToOpaqueAuth({ flavor: AUTH_SYS, stamp: 0, machineName: 'bench', uid: 0, gid: 0, gids: [] });
  writeCallHeader(w, { xid: 0, prog: NLM_PROG, vers: 4, proc, cred, verf: NULL_AUTH });
  const lock: NlmLock = { callerName: 'bench', fh, oh: Buffer.from(`owner-${owner}`), svid: owner, offset: 0n, length: 100n };
  const cookie = Buffer.alloc(4, owner & 0xff);
  if (proc === NlmProc.LOCK) encodeLockArgs(w, 4, { cookie, block: false, exclusive: true, lock, reclaim: false, state: 1 });
  else encodeUnlockArgs(w, 4, { cookie, lock });
  const m = w.toBuffer();
  return transport === 'tcp' ? encodeRecord(m) : m;
}

async function generate(transport: Transport, port: number, handles: Buffer[], ms: number): Promise<GenResult> {
  const xidAt = transport === 'tcp' ? 4 : 0;
  const owners = handles.length;
  const msgs = handles.map((fh, i) => [message(NlmProc.LOCK, i, fh, transport), message(NlmProc.UNLOCK, i, fh, transport)] as const);
  const state = Array.from({ length: owners }, () => ({ step: 0, sentAt: 0n, xid: 0 }));
  const latencies = new Float64Array(4_000_000);
  let n = 0;
  let errors = 0;
  let retransmits = 0;
  let xid = 1;
  let measuring = false;
  let running = true;
  let send: (b: Buffer) => void;
  const byXid = new Map<number, number>();

  const fire = (o: number): void => {
    const s = state[o]!;
    const b = msgs[o]![s.step & 1]!;
    s.xid = xid = (xid + 1) >>> 0;
    b.writeUInt32BE(s.xid, xidAt);
    byXid.set(s.xid, o);
    s.sentAt = process.hrtime.bigint();
    send(b);
  };
  const onReply = (buf: Buffer): void => {
    const x = buf.readUInt32BE(0);
    const o = byXid.get(x);
    if (o === undefined) return;
    byXid.delete(x);
    const s = state[o]!;
    // accepted SUCCESS, then the 4-byte cookie netobj, then the stat
    if (buf.readUInt32BE(8) !== 0 || buf.readUInt32BE(20) !== 0 || buf.readUInt32BE(32) !== 0) errors++;
    if (measuring && n < latencies.length) latencies[n++] = Number(process.hrtime.bigint() - s.sentAt) / 1e3;
    s.step++;
    if (running) fire(o);
  };

  let close: () => void;
  if (transport === 'udp') {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.connect(port, HOST, r));
    sock.on('message', onReply);
    send = (b) => sock.send(b);
    close = () => sock.close();
    // A datagram lost in a full buffer must not stall an owner: resend after 200 ms.
    const t = setInterval(() => {
      const now = process.hrtime.bigint();
      for (let o = 0; o < owners; o++) {
        const s = state[o]!;
        if (byXid.has(s.xid) && now - s.sentAt > 200_000_000n) {
          retransmits++;
          sock.send(msgs[o]![s.step & 1]!);
        }
      }
    }, 100);
    const c0 = close;
    close = () => { clearInterval(t); c0(); };
  } else {
    const sock = net.connect({ host: HOST, port, noDelay: true });
    await new Promise<void>((r) => sock.once('connect', r));
    const dec = new RecordDecoder(1 << 20);
    sock.on('data', (chunk) => { for (const rec of dec.push(chunk)) onReply(rec); });
    send = (b) => void sock.write(b);
    close = () => sock.destroy();
  }

  for (let o = 0; o < owners; o++) fire(o);
  await new Promise((r) => setTimeout(r, 500)); // warm-up
  measuring = true;
  process.send!('start');
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, ms));
  measuring = false;
  process.send!('stop');
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  running = false;
  await new Promise((r) => setTimeout(r, 300));
  close();
  const sorted = latencies.subarray(0, n).sort();
  return {
    rpcs: n, seconds,
    p50: sorted[Math.floor(n * 0.5)] ?? 0, p99: sorted[Math.floor(n * 0.99)] ?? 0,
    cpu: (cpu.user + cpu.system) / 1e6 / seconds, retransmits, errors,
  };
}

// ---- server and driver (parent process) ----

type Mode = 'memory' | 'files' | 'journal-tmpfs' | 'journal-ext4' | 'journal-etcd';
const MAX_OWNERS = 64;

interface Stack {
  mode: Mode;
  table: LockTable;
  server: RpcServer;
  /** The journal's store (journal rows): its batches are counted. */
  store: DirectoryStore | undefined;
  close(): Promise<void>;
}

/** A state directory on a fresh filesystem of this kind, mounted in this (private) mount namespace. */
function stateDirOn(fs: 'tmpfs' | 'ext4'): string {
  const dir = mkdtempSync(join(tmpdir(), `lockdrop-bench-state-${fs}-`));
  if (fs === 'tmpfs') execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256m', 'lockdrop-bench-state', dir]);
  else {
    const img = `${dir}.img`;
    execFileSync('truncate', ['-s', '512M', img]);
    execFileSync('mkfs.ext4', ['-q', '-F', img]);
    execFileSync('mount', ['-o', 'loop', img, dir]);
  }
  return dir;
}

/** An NLM server on HOST whose table keeps locks in memory, on the export's files, or in memory with the journal. */
async function startStack(mode: Mode, exp: BenchExport | undefined, address = HOST): Promise<Stack> {
  let service: ReturnType<typeof createNlmService> | undefined;
  let journal: LockJournal | undefined;
  let store: DirectoryStore | undefined;
  const onFiles = mode === 'files' ? { locker: exp!.files, exportOf: (fh: Buffer) => exp!.exports.exportOf(fh) } : {};
  const onJournal = mode.startsWith('journal') ? { journal: (a: string, r: Parameters<LockJournal['append']>[1]) => journal!.append(a, r) } : {};
  const table = new LockTable({ onBlockGranted: (g) => service!.onBlockGranted(g), ...onFiles, ...onJournal });
  if (mode === 'journal-tmpfs' || mode === 'journal-ext4') {
    store = await DirectoryStore.open({ stateDir: stateDirOn(mode === 'journal-tmpfs' ? 'tmpfs' : 'ext4'), node: 'bench', log: pino({ level: 'warn' }) });
    journal = new LockJournal({ store, table, barrierMs: () => 1000, log: pino({ level: 'warn' }) });
    await journal.takeOver(address);
  }
  let etcd: EtcdCluster | undefined;
  if (mode === 'journal-etcd') {
    // Three members on loopback, their data on this machine's disk (every raft write an fsync).
    etcd = await EtcdCluster.start();
    const store = await EtcdStore.open({ endpoints: etcd.endpoints, prefix: '/lockdrop/bench', node: 'bench', log: pino({ level: 'warn' }) });
    journal = new LockJournal({ store, table, barrierMs: () => 1000, log: pino({ level: 'warn' }) });
    await journal.takeOver(address);
  }
  service = createNlmService({ table, durable: () => journal?.durable() });
  const server = new RpcServer();
  for (const p of service.programs) server.register(p);
  await server.addAddress(address);
  return { mode, table, server, store, close: async () => { service!.close(); await server.close(); await journal?.close(); await etcd?.stop(); } };
}

/** The software path alone (RPC decode, NLM, table, files, reply encode), no sockets: CPU µs per RPC. */
async function dispatchOnly(stack: Stack, handles: Buffer[]): Promise<number> {
  const meta = { transport: 'tcp' as const, local: { address: HOST, port: stack.server.port }, peer: { address: HOST, port: 900 } };
  const msgs = handles.map((fh, o) => [message(NlmProc.LOCK, o, fh, 'udp'), message(NlmProc.UNLOCK, o, fh, 'udp')] as const);
  let us = 0;
  for (let round = 0; round < 3; round++) { // the last round, once the JIT has warmed up
    let n = 0;
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    while (process.hrtime.bigint() - t0 < 700_000_000n) {
      for (const [l, u] of msgs) {
        await stack.server.dispatcher.handle(l, meta);
        await stack.server.dispatcher.handle(u, meta);
        n += 2;
      }
    }
    const c = process.cpuUsage(c0);
    us = (c.user + c.system) / n;
  }
  return us;
}

/**
 * The same with every owner in flight at once (each sends its LOCK, then its UNLOCK, when the
 * previous reply is back), as the generator does: a journal's grants share their commits here.
 * CPU µs per RPC, and the journal's records per write.
 */
async function dispatchConcurrent(stack: Stack, handles: Buffer[]): Promise<{ us: number; perWrite: number | undefined }> {
  const meta = { transport: 'tcp' as const, local: { address: HOST, port: stack.server.port }, peer: { address: HOST, port: 900 } };
  const msgs = handles.map((fh, o) => [message(NlmProc.LOCK, o, fh, 'udp'), message(NlmProc.UNLOCK, o, fh, 'udp')] as const);
  let us = 0;
  let perWrite: number | undefined;
  for (let round = 0; round < 3; round++) {
    let n = 0;
    const w0 = stack.store ? { ...stack.store.counters } : undefined;
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const until = t0 + 700_000_000n;
    await Promise.all(msgs.map(async ([l, u]) => {
      while (process.hrtime.bigint() < until) {
        await stack.server.dispatcher.handle(l, meta);
        await stack.server.dispatcher.handle(u, meta);
        n += 2;
      }
    }));
    const c = process.cpuUsage(c0);
    us = (c.user + c.system) / n;
    if (w0 && stack.store) perWrite = (stack.store.counters.records - w0.records) / (stack.store.counters.writes - w0.writes);
  }
  return { us, perWrite };
}

/** Runs one generator; also the server's CPU seconds per wall second inside the generator's measuring window. */
const measure = (transport: Transport, port: number, handles: Buffer[], ms: number) =>
  runGenerator<GenResult>(__filename, ['generate', transport, String(port), handles.map((h) => h.toString('hex')).join(','), String(ms)]);

/** knfsd-shaped handles (fsid 7) of files that exist nowhere, for the memory rows when no real export can be made. */
const syntheticHandles = (n: number): Buffer[] => Array.from({ length: n }, (_, i) => {
  const b = Buffer.alloc(20);
  b.set([1, 0, 1, 1]);
  b.writeUInt32LE(7, 4);
  b.writeUInt32LE(1000 + i, 8);
  return b;
});

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const roundsArg = process.argv.findIndex((a) => a.startsWith('--rounds='));
  const rounds = roundsArg < 0 ? 1 : Number(process.argv.splice(roundsArg, 1)[0]!.slice('--rounds='.length));
  const seconds = Number(process.argv[2] ?? 3);
  const onlyTransport = process.argv[3];
  const onlyOwners = process.argv[4] === undefined ? undefined : Number(process.argv[4]);
  const onlyMode = process.argv[5] as Mode | undefined;
  const noFiles = realFilesUnavailable();
  const exp = noFiles === undefined ? tmpfsExport() : undefined;
  // The same handles for both modes: a knfsd handle of a tmpfs file per owner.
  const handles = exp ? exp.handles('owner-', MAX_OWNERS) : syntheticHandles(MAX_OWNERS);
  const modes = (['memory', 'files', 'journal-tmpfs', 'journal-ext4', 'journal-etcd'] as const).filter((m) => (onlyMode === undefined || m === onlyMode) && (m === 'memory' || exp) && (m !== 'journal-etcd' || hasEtcd()));
  const stacks = new Map<Mode, Stack>();
  for (const m of modes) stacks.set(m, await startStack(m, exp));
  console.log(`NLM v4 LOCK+UNLOCK on ${HOST}, ${seconds} s per run, node ${process.version}${exp ? `; files: a tmpfs export, ${handles[0]!.length}-byte knfsd handles` : `; files: skipped (${noFiles})`}`);
  const perRpc = new Map<Mode, number>();
  for (const [m, stack] of stacks) perRpc.set(m, await dispatchOnly(stack, handles));
  console.log(`dispatch only (no sockets, 64 owners one after another): ${[...perRpc].map(([m, us]) => `${m} ${us.toFixed(2)} µs CPU per RPC`).join(', ')}`);
  const concurrent: string[] = [];
  for (const [m, stack] of stacks) {
    const c = await dispatchConcurrent(stack, handles);
    concurrent.push(`${m} ${c.us.toFixed(2)} µs${c.perWrite === undefined ? '' : ` (${c.perWrite.toFixed(1)} records per write)`}`);
  }
  console.log(`dispatch only (no sockets, 64 owners at once): CPU per RPC ${concurrent.join(', ')}`);
  // With a busy machine the rate is bounded by the CPU we get: server CPU µs per RPC is the steadier figure.
  console.log('transport owners mode             RPC/s  pairs/s  p50 µs  p99 µs  server CPU  µs CPU/RPC  generator CPU  retransmits errors  of memory  records/write');
  for (const transport of ['udp', 'tcp'] as const) {
    if (onlyTransport !== undefined && transport !== onlyTransport) continue;
    for (const owners of [1, 8, MAX_OWNERS]) {
      if (onlyOwners !== undefined && owners !== onlyOwners) continue;
      const seen = new Map<Mode, { ratio: number[]; us: number[]; p50: number[]; p99: number[] }>();
      for (let round = 0; round < rounds; round++) {
        let memoryRate: number | undefined;
        for (const [mode, stack] of stacks) {
          const w0 = stack.store ? { ...stack.store.counters } : undefined;
          const r = await measure(transport, stack.server.port, handles.slice(0, owners), seconds * 1000);
          const batch = w0 && stack.store ? ((stack.store.counters.records - w0.records) / (stack.store.counters.writes - w0.writes)).toFixed(1) : '';
          const { serverCpu } = r;
          const rate = r.rpcs / r.seconds;
          if (mode === 'memory') memoryRate = rate;
          const ratio = mode !== 'memory' && memoryRate ? `${((rate / memoryRate) * 100).toFixed(0)}%` : '';
          console.log(`${transport.padEnd(9)} ${String(owners).padStart(6)} ${mode.padEnd(14)} ${rate.toFixed(0).padStart(7)} ${(rate / 2).toFixed(0).padStart(8)} ${r.p50.toFixed(0).padStart(7)} ${r.p99.toFixed(0).padStart(7)} ${(serverCpu * 100).toFixed(0).padStart(10)}% ${((serverCpu * 1e6) / rate).toFixed(1).padStart(11)} ${(r.cpu * 100).toFixed(0).padStart(13)}% ${String(r.retransmits).padStart(12)} ${String(r.errors).padStart(6)} ${ratio.padStart(10)} ${batch.padStart(14)}`);
          const m = seen.get(mode) ?? { ratio: [], us: [], p50: [], p99: [] };
          seen.set(mode, m);
          if (memoryRate) m.ratio.push(rate / memoryRate);
          m.us.push((serverCpu * 1e6) / rate);
          m.p50.push(r.p50);
          m.p99.push(r.p99);
        }
      }
      if (rounds > 1) {
        console.log(`${transport} ${owners} owners, medians of ${rounds} rounds (each ratio to the memory row of its round):`);
        for (const [mode, m] of seen) console.log(`  ${mode.padEnd(14)} ${m.ratio.length && mode !== 'memory' ? `${(median(m.ratio) * 100).toFixed(0)}% of memory (${m.ratio.map((x) => (x * 100).toFixed(0)).join(' ')}), ` : ''}${median(m.us).toFixed(1)} µs CPU/RPC, p50 ${median(m.p50).toFixed(0)} µs, p99 ${median(m.p99).toFixed(0)} µs`);
      }
    }
  }
  // A generator stops between a LOCK and its UNLOCK: what it left held goes, and nothing stays open.
  for (const stack of stacks.values()) {
    stack.table.dropByServerAddress(HOST);
    await stack.close();
  }
  if (exp) {
    const s = exp.files.stats();
    if (s.open !== 0) throw new Error(`${s.open} files still open after the runs`);
    exp.files.setExports([]);
  }
}

/** The memory server alone (on HOST or the address given); SIGUSR2 prints what it did so far (RPCs, read/write syscalls, CPU µs). */
async function serve(address: string | undefined): Promise<void> {
  const stack = await startStack('memory', undefined, address);
  let rpcs = 0;
  const { table } = stack;
  const { lock, unlock } = table;
  table.lock = (r, o) => (rpcs++, lock.call(table, r, o));
  table.unlock = (r) => (rpcs++, unlock.call(table, r));
  const io = (k: string): number => Number(readFileSync('/proc/self/io', 'utf8').split('\n').find((l) => l.startsWith(`${k}:`))?.split(': ')[1]);
  process.on('SIGUSR2', () => {
    const c = process.cpuUsage();
    console.log(JSON.stringify({ rpcs, reads: io('syscr'), writes: io('syscw'), cpuUs: c.user + c.system }));
  });
  process.on('SIGTERM', () => void stack.close().then(() => process.exit(0)));
  console.log(JSON.stringify({ port: stack.server.port, pid: process.pid }));
}

if (process.argv[2] === 'serve') {
  void serve(process.argv[3]);
} else if (process.argv[2] === 'drive') {
  const [, , , port, owners, ms, pid] = process.argv;
  const handles = syntheticHandles(Number(owners)).map((h) => h.toString('hex')).join(',');
  const child = fork(__filename, ['generate', 'tcp', port!, handles, ms!], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  child.on('message', (m) => (m === 'start' || m === 'stop' ? process.kill(Number(pid), 'SIGUSR2') : console.log(JSON.stringify(m))));
} else if (process.argv[2] === 'generate') {
  const [, , , transport, port, handles, ms] = process.argv;
  generate(transport as Transport, Number(port), handles!.split(',').map((h) => Buffer.from(h, 'hex')), Number(ms)).then((r) => {
    process.send!(r, () => process.exit(0));
  });
} else {
  reexecInNamespaces(['mount']);
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
