// Benchmarks of the eBPF probes and the rtnetlink socket (run as root: npx tsx bench/bpf.ts).
// 1. Detection latency: from the moment `ip addr del` sends its request (the intent's kernel
//    timestamp, CLOCK_MONOTONIC) to the event reaching JavaScript, for the bpf intent (ring buffer)
//    and for the netlink socket (RTM_DELADDR multicast). p50 / p99 over the runs.
// 2. Probe cost: ns per sendmsg() on an unrelated socket, 100k calls from a small C program,
//    with and without the probes attached; and the probes' own run time per invocation as the
//    kernel counts it (BPF_ENABLE_STATS), which the machine's noise does not blur.
// It re-executes itself in private network and mount namespaces: no address touches the machine's own.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { map } from 'rxjs';
import { BpfObject, bpfRunTimeStats, openLockdropProbes, openRtnetlink, probeObjectPath } from '../src/addon';
import { decodeEvent, netlink, type ProbeEvent } from '../src/watch';

const { RTM_DELADDR } = netlink;

const RUNS = Number(process.env.RUNS ?? 300);
const CALLS = 100_000;

if (process.getuid?.() !== 0) {
  console.error('bench/bpf.ts needs root (eBPF, namespaces)');
  process.exit(1);
}
if (process.env.LOCKDROP_BENCH_NS !== '1') {
  const r = spawn('unshare', ['--net', '--mount', '--propagation', 'private', process.execPath, ...process.execArgv, __filename], {
    stdio: 'inherit', env: { ...process.env, LOCKDROP_BENCH_NS: '1' },
  });
  r.on('exit', (code) => process.exit(code ?? 1));
} else {
  main().then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });
}

const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
const fmt = (xs: number[]): string => `p50 ${pct(xs, 50).toFixed(3)} ms, p99 ${pct(xs, 99).toFixed(3)} ms (n=${xs.length})`;

async function main(): Promise<void> {
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  execFileSync('ip', ['link', 'add', 'bench0', 'type', 'veth', 'peer', 'name', 'bench1']);
  execFileSync('ip', ['link', 'set', 'bench0', 'up']);
  execFileSync('ip', ['link', 'set', 'bench1', 'up']);
  await latency();
  cost();
}

async function latency(): Promise<void> {
  const probes = openLockdropProbes();
  const rtnl = openRtnetlink();
  const intents: Array<{ ev: ProbeEvent; atNs: bigint }> = [];
  const deletions: bigint[] = [];
  const s1 = probes.records$.pipe(map(decodeEvent)).subscribe((ev) => { if (ev.kind === 'intent' && ev.msgType === RTM_DELADDR) intents.push({ ev, atNs: process.hrtime.bigint() }); });
  const s2 = rtnl.messages$.subscribe((d) => { if (Buffer.isBuffer(d) && d.length >= 16 && d.readUInt16LE(4) === RTM_DELADDR) deletions.push(process.hrtime.bigint()); });
  // One long-lived `ip -batch -`: each line is one request, sent when we write it.
  const ip = spawn('ip', ['-batch', '-'], { stdio: ['pipe', 'ignore', 'inherit'] });
  const bpfMs: number[] = [];
  const netlinkMs: number[] = [];
  const until = async (cond: () => boolean): Promise<void> => { while (!cond()) await new Promise((r) => setImmediate(r)); };
  for (let i = 0; i < RUNS; i++) {
    ip.stdin.write('addr add 10.90.0.1/24 dev bench0\n');
    await new Promise((r) => setTimeout(r, 2));
    const [ni, nd] = [intents.length, deletions.length];
    ip.stdin.write('addr del 10.90.0.1/24 dev bench0\n');
    await until(() => intents.length > ni && deletions.length > nd);
    const { ev, atNs } = intents[ni];
    bpfMs.push(Number(atNs - ev.tsNs) / 1e6);
    netlinkMs.push(Number(deletions[nd] - ev.tsNs) / 1e6);
  }
  ip.stdin.end();
  s1.unsubscribe();
  s2.unsubscribe();
  rtnl.close();
  probes.close();
  console.log(`ip addr del → JavaScript, from the request's sendmsg (kernel timestamp):`);
  console.log(`  bpf intent (ring buffer):   ${fmt(bpfMs)}`);
  console.log(`  netlink (RTM_DELADDR):      ${fmt(netlinkMs)}`);
}

/** run_cnt and run_time_ns of the programs this process holds (ids from /proc/self/fdinfo). */
function programStats(): Map<string, { runs: number; ns: number }> {
  const out = new Map<string, { runs: number; ns: number }>();
  for (const fd of readdirSync('/proc/self/fdinfo')) {
    let info = '';
    try {
      info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    } catch {
      continue;
    }
    const id = /^prog_id:\s*(\d+)/m.exec(info)?.[1];
    if (!id) continue;
    const p = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show', 'id', id], { encoding: 'utf8' })) as { name: string; run_cnt?: number; run_time_ns?: number };
    out.set(p.name, { runs: p.run_cnt ?? 0, ns: p.run_time_ns ?? 0 });
  }
  return out;
}

function cost(): void {
  const dir = mkdtempSync(join(tmpdir(), 'ld-bench-'));
  try {
    writeFileSync(join(dir, 'send.c'), `
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
  int n = atoi(argv[1]);
  /* A receiver that never reads: its queue fills and the rest is dropped, with no ICMP errors. */
  int rx = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  socklen_t len = sizeof to;
  bind(rx, (struct sockaddr *)&to, sizeof to);
  getsockname(rx, (struct sockaddr *)&to, &len);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  char payload[64] = { 0 };
  struct iovec iov = { payload, sizeof payload };
  struct msghdr m = { .msg_name = &to, .msg_namelen = sizeof to, .msg_iov = &iov, .msg_iovlen = 1 };
  if (argv[2][0] == 'u') {
    /* A unix datagram pair whose queue is full: the syscall returns EAGAIN at once, so what
     * remains is mostly the tracepoints' cost. */
    int pair[2];
    socketpair(AF_UNIX, SOCK_DGRAM, 0, pair);
    while (send(pair[0], payload, sizeof payload, MSG_DONTWAIT) > 0) {}
    fd = pair[0];
    m.msg_name = NULL;
    m.msg_namelen = 0;
  }
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int i = 0; i < n; i++) sendmsg(fd, &m, MSG_DONTWAIT);
  clock_gettime(CLOCK_MONOTONIC, &b);
  printf("%.1f\\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
  return 0;
}`);
    execFileSync('cc', ['-O2', '-o', join(dir, 'send'), join(dir, 'send.c')]);
    const once = (mode: string): number => Number(execFileSync(join(dir, 'send'), [String(CALLS), mode], { encoding: 'utf8' }));
    const modes = { udp: 'UDP to loopback', unix: 'full unix datagram socket (EAGAIN)' };
    once('udp');
    // Alternate without / with, several rounds: the machine's noise is larger than the effect.
    // "other tracepoint" attaches only the selftest object (sys_enter_kill): any syscall
    // tracepoint moves every syscall to the kernel's slow path; the rest is the probes' own code.
    const setups: Record<string, () => () => void> = {
      without: () => () => undefined,
      'other tracepoint': () => {
        const o = BpfObject.open(join(dirname(probeObjectPath), 'selftest.bpf.o')).load();
        o.attachAll();
        return () => o.close();
      },
      'lockdrop probes': () => {
        const p = openLockdropProbes();
        return () => p.close();
      },
    };
    const runs: Record<string, Record<string, number[]>> = {};
    for (let round = 0; round < 5; round++) {
      for (const [setup, open] of Object.entries(setups)) {
        const close = open();
        for (const mode of Object.keys(modes)) ((runs[setup] ??= {})[mode] ??= []).push(once(mode), once(mode));
        close();
      }
    }
    console.log(`probe cost, ${CALLS} unrelated sendmsg() calls per run (median of 10 runs, setups alternating):`);
    for (const [mode, label] of Object.entries(modes)) {
      const base = pct(runs.without[mode], 50);
      const cols = Object.keys(setups).map((setup) => {
        const v = pct(runs[setup][mode], 50);
        return `${setup} ${v.toFixed(0)} ns${setup === 'without' ? '' : ` (${v - base >= 0 ? '+' : ''}${(v - base).toFixed(0)})`}`;
      });
      console.log(`  ${label}: ${cols.join(', ')}`);
    }
    // The probes' own run time, counted by the kernel (BPF_ENABLE_STATS), for the same calls.
    const probes = openLockdropProbes();
    bpfRunTimeStats(true);
    const before = programStats();
    once('udp');
    const after = programStats();
    bpfRunTimeStats(false);
    probes.close();
    console.log(`probe run time per invocation (kernel BPF stats, ${CALLS} UDP sendmsg calls):`);
    for (const [name, a] of after) {
      const b = before.get(name) ?? { runs: 0, ns: 0 };
      const runs = a.runs - b.runs;
      if (runs > 0) console.log(`  ${name}: ${runs} runs, ${((a.ns - b.ns) / runs).toFixed(0)} ns per run`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
