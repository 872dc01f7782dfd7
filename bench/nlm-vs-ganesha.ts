// lockdrop's NLM server against NFS-Ganesha's (issue 15), side by side in one run with one load
// generator: NLM v4 LOCK+UNLOCK, OWNERS owners on disjoint 100-byte ranges of one file, each owner
// one call in flight on a socket of its own (as a libtirpc client per owner), over UDP and TCP.
//
// Both servers run in one node (a network namespace with its own mount namespace and rpcbind,
// test/support/ganesha.ts), the generator outside it across the veth, so both pay the same
// network path: Ganesha 4.3 (apt nfs-ganesha, nfs-ganesha-vfs) with NLM on, a tmpfs export and a
// statd of the node's own (Ganesha monitors every lock's client); lockdrop's server as
// bench/nlm-lock.ts serves it (RpcServer + NLM service + LockTable, locks in memory), its src/
// modules built by tsc and loaded from dist/ as lockdropd runs them (bench/compiled.cjs; the
// benchmark runs `npm run build` first), locking the same file handle. The generator is bench/nlm-load.c, built here with gcc: C threads
// with blocking sockets cost ~2 syscalls and no allocation per RPC, where a Node generator took
// 50–85 % of a core (bench/nlm-lock.ts) of the two this machine has. It reads each server's CPU
// (every thread, /proc/PID/stat) over its own window. Rows alternate between the servers.
//
//   npx tsx bench/nlm-vs-ganesha.ts [seconds per run, default 4] [owners, default 8] [rounds, default 2] [udp|tcp]
//
// Needs root (it runs itself again in private network and mount namespaces).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { RpcClient } from '../src/rpc';
import { ganeshaUnavailable, nodeExec, nodeSpawn, startGanesha, startNfsNode, type Ganesha, type NfsNode } from '../test/support/ganesha';
import { lookup, mount } from '../test/support/nfs3';
import { reexecInNamespaces } from './real-files';

const HOST = '10.213.15.1';
const NODE = '10.213.15.2';

interface Load { rpcs: number; seconds: number; serverCpu: number; generatorCpu: number; errors: number; retransmits: number; failed: string }
type Transport = 'udp' | 'tcp';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function load(bin: string, transport: Transport, port: number, owners: number, ms: number, fh: Buffer, pid: number): Load {
  const out = execFileSync(bin, [transport, NODE, String(port), String(owners), '500', String(ms), fh.toString('hex'), String(pid), HOST], { encoding: 'utf8' });
  const r = JSON.parse(out) as Load;
  if (r.failed) throw new Error(`load generator: ${r.failed}`);
  if (r.rpcs === 0) throw new Error('load generator: no replies in the window');
  return r;
}

/** rpc.statd in the node (Ganesha's NLM monitors each client through it), with a state dir of its own. */
async function startStatd(node: NfsNode, dir: string): Promise<void> {
  for (const sub of ['sm', 'sm.bak']) mkdirSync(path.join(dir, sub), { recursive: true });
  const child = nodeSpawn(node, 'rpc.statd', ['-F', '-L', '-P', dir]);
  child.stderr!.resume();
  child.stdout!.resume();
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`rpc.statd exited ${child.exitCode}`);
    if (/\b100024\b/.test(nodeExec(node, 'rpcinfo', ['-p', '127.0.0.1'], { allowFail: true }))) return;
    await sleep(50);
  }
  throw new Error('rpc.statd did not register within 5 s');
}

/** bench/nlm-lock.ts's memory server in the node, on its address; resolves with its port and pid. */
async function startLockdrop(node: NfsNode): Promise<{ port: number; pid: number }> {
  // nsenter -m starts in /: from the repository, for tsx (sh execs node: the pid is the server's).
  const child = nodeSpawn(node, 'sh', ['-c', `cd '${path.join(__dirname, '..')}' && exec '${process.execPath}' -r ./bench/compiled.cjs --import tsx bench/nlm-lock.ts serve ${NODE}`]);
  child.stderr!.pipe(process.stderr);
  const first = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`lockdrop's server exited ${code}`)));
  });
  child.stdout!.resume();
  return JSON.parse(first) as { port: number; pid: number };
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 4);
  const owners = Number(process.argv[3] ?? 8);
  const rounds = Number(process.argv[4] ?? 2);
  const only = process.argv[5] as Transport | undefined;
  // Our own namespaces are the private ones test/support/ganesha.ts asks for.
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  process.env.LOCKDROP_TEST_NS = '1';
  const why = ganeshaUnavailable();
  if (why !== undefined) throw new Error(`NFS-Ganesha cannot run here: ${why}`);

  execFileSync('npm', ['run', '--silent', 'build'], { cwd: path.join(__dirname, '..'), stdio: 'inherit' }); // dist/ for bench/compiled.cjs
  const base = mkdtempSync(path.join(tmpdir(), 'lockdrop-vs-ganesha-'));
  const bin = path.join(base, 'nlm-load');
  execFileSync('gcc', ['-O2', '-pthread', '-o', bin, path.join(__dirname, 'nlm-load.c')]);
  const exportDir = path.join(base, 'export');
  mkdirSync(exportDir);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'lockdrop-vs-ganesha', exportDir]); // before the node: its mount namespace copies ours
  writeFileSync(path.join(exportDir, 'locked'), '');
  let node: NfsNode | undefined;
  let ganesha: Ganesha | undefined;
  try {
    node = await startNfsNode({ hostAddress: HOST, address: NODE });
    await startStatd(node, path.join(base, 'statd'));
    ganesha = await startGanesha({ node, exportPath: exportDir, nlm: true });
    const client = (port: number): RpcClient => new RpcClient({ transport: 'udp', host: NODE, port, timeoutMs: 5_000 });
    const mnt = client(ganesha.mountPort.udp);
    const nfs = client(ganesha.nfsPort.udp);
    const fh = (await lookup(nfs, (await mount(mnt, exportDir)).fh, 'locked')).fh;
    mnt.close();
    nfs.close();
    const lockdrop = await startLockdrop(node);
    const servers = [
      { name: 'NFS-Ganesha', pid: ganesha.pid, port: ganesha.nlmPort! },
      { name: 'lockdrop', pid: lockdrop.pid, port: { udp: lockdrop.port, tcp: lockdrop.port } },
    ];
    const uptime = (): string => execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).split(' ').slice(0, 3).join(' ');
    console.log(`NLM v4 LOCK+UNLOCK, ${owners} owners on disjoint ranges of one file, one call in flight per owner's socket; ${seconds} s per run, ${rounds} rounds; ${fh.length}-byte Ganesha handle; node ${process.version}; load average ${uptime()}`);
    console.log('transport server         RPC/s   server CPU  µs CPU/RPC  generator CPU  errors retransmits');
    const summary: string[] = [];
    for (const transport of ['udp', 'tcp'] as const) {
      if (only !== undefined && transport !== only) continue;
      const rows = new Map<string, { rate: number; us: number }[]>();
      for (let round = 0; round < rounds; round++) {
        for (const s of servers) {
          const r = load(bin, transport, s.port[transport], owners, seconds * 1000, fh, s.pid);
          const rate = r.rpcs / r.seconds;
          const us = (r.serverCpu * 1e6) / r.rpcs;
          (rows.get(s.name) ?? rows.set(s.name, []).get(s.name)!).push({ rate, us });
          console.log(`${transport.padEnd(9)} ${s.name.padEnd(12)} ${rate.toFixed(0).padStart(8)} ${((r.serverCpu / r.seconds) * 100).toFixed(0).padStart(11)}% ${us.toFixed(1).padStart(11)} ${((r.generatorCpu / r.seconds) * 100).toFixed(0).padStart(13)}% ${String(r.errors).padStart(7)} ${String(r.retransmits).padStart(11)}`);
          if (r.errors > 0) throw new Error(`${s.name} over ${transport}: ${r.errors} replies not granted`);
        }
      }
      const mean = (name: string, k: 'rate' | 'us'): number => rows.get(name)!.reduce((a, x) => a + x[k], 0) / rounds;
      const [g, l] = ['NFS-Ganesha', 'lockdrop'];
      summary.push(`${transport}: lockdrop ${(mean(l, 'rate') / 1000).toFixed(1)}k RPC/s at ${mean(l, 'us').toFixed(1)} µs CPU/RPC, NFS-Ganesha ${(mean(g, 'rate') / 1000).toFixed(1)}k at ${mean(g, 'us').toFixed(1)} µs: ${(mean(l, 'rate') / mean(g, 'rate')).toFixed(2)}× the RPC/s, ${(mean(l, 'us') / mean(g, 'us')).toFixed(2)}× the CPU per RPC`);
    }
    for (const line of summary) console.log(line);
    console.log(`load average after: ${uptime()}`);
    process.kill(lockdrop.pid, 'SIGTERM');
  } finally {
    await ganesha?.stop();
    await node?.dispose();
    execFileSync('umount', [exportDir]);
    rmSync(base, { recursive: true, force: true });
  }
}

reexecInNamespaces(['net', 'mount']);
main().catch((err) => {
  console.error(err);
  process.exit(1);
});
