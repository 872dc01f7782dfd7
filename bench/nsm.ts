// NSM benchmarks: `npx tsx bench/nsm.ts` (as root it runs in a private network namespace).
//  1. SM_MON calls per second over UDP, each answered only once its record is durable
//     (UV_THREADPOOL_SIZE=32 unless set: see below);
//  2. time to load 10k records at start;
//  3. time to notify 10k hosts on 127.x addresses, all answering (target <= 1 s).
// The hosts in (3) are played by a small responder (python3) on two wildcard UDP sockets that
// answer GETPORT and SM_NOTIFY from the very address they were sent to (IP_PKTINFO), as 10k real
// hosts would.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { RpcClient, RpcServer } from '../src/rpc';
import { createNsmProgram, decodeSmStatRes, encodeMon, Nsm, NsmStore, NSM_PROGRAM, NSM_VERSION, RpcNsmSender, SM_MON, STAT_SUCC } from '../src/nsm';

// Durable writes wait in the libuv thread pool (fdatasync): 4 threads let the disk batch only
// 4 at a time. The pool starts at its first use, so this must come first (as in a daemon entry point).
process.env.UV_THREADPOOL_SIZE ??= '32';

if (process.getuid?.() === 0 && !process.env.LOCKDROP_BENCH_NS) {
  // Re-run inside a private network namespace: the 127.x traffic stays there.
  try {
    execFileSync('unshare', ['--net', '--', 'sh', '-c', `ip link set lo up && exec "${process.execPath}" ${process.execArgv.join(' ')} "${process.argv[1]}"`],
      { stdio: 'inherit', env: { ...process.env, LOCKDROP_BENCH_NS: '1' } });
    process.exit(0);
  } catch {
    process.exit(1);
  }
}

const N = 10_000;
const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;
const hostAddress = (i: number): string => `127.1.${(i >> 8) & 255}.${i & 255}`;
const monName = (k: number): string => `10.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}`;

async function smMonRate(dir: string): Promise<void> {
  const nsm = new Nsm({ store: new NsmStore(dir) });
  const server = new RpcServer({ duplicateCacheSize: 8192 });
  server.register(createNsmProgram({ nsm }));
  await server.addAddress('127.0.0.1');
  const client = new RpcClient({ transport: 'udp', host: '127.0.0.1', port: server.port, timeoutMs: 30_000, retransmitMs: 2_000 });
  const mon = (i: number) => client.call(NSM_PROGRAM, NSM_VERSION, SM_MON,
    (w) => encodeMon(w, { monId: { monName: monName(i), myId: { myName: 'bench', myProg: 100021, myVers: 4, myProc: 16 } }, priv: Buffer.alloc(16) }),
    decodeSmStatRes);
  for (const inFlight of [1, 64, 512]) {
    const total = inFlight === 1 ? 500 : 5_000;
    const base = inFlight * 10_000;
    let next = 0;
    const t0 = process.hrtime.bigint();
    await Promise.all(Array.from({ length: inFlight }, async () => {
      for (let i = next++; i < total; i = next++) {
        const r = await mon(base + i);
        if (r.res !== STAT_SUCC) throw new Error('SM_MON failed');
      }
    }));
    const t = ms(t0);
    console.log(`SM_MON, durable, ${inFlight} in flight: ${total} calls in ${t.toFixed(0)} ms = ${Math.round(total / (t / 1000))} calls/s`);
  }
  client.close();
  await server.close();
  await nsm.close();
}

async function loadRecords(dir: string): Promise<void> {
  const store = new NsmStore(dir);
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: N }, (_, i) => store.put({ monName: `client${i}`, address: hostAddress(i), serverAddress: '127.0.0.2', local: true, callbacks: [], since: Date.now() })));
  console.log(`write ${N} records (group commit): ${ms(t0).toFixed(0)} ms, ${store.dirSyncs} directory fsyncs`);
  const t1 = process.hrtime.bigint();
  const nsm = new Nsm({ store: new NsmStore(dir) });
  const rep = await nsm.activate('127.0.0.2');
  console.log(`load ${rep.records} records at start: ${ms(t1).toFixed(0)} ms`);
}

const RESPONDER = String.raw`
import socket, struct, sys
IP_PKTINFO = 8
def sock(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE: a burst of 10k calls must not be dropped
    s.bind(('0.0.0.0', port))
    return s
pmap = sock(0); statd = sock(0)
statd_port = statd.getsockname()[1]
print(pmap.getsockname()[1], flush=True)
import selectors
sel = selectors.DefaultSelector()
sel.register(pmap, selectors.EVENT_READ); sel.register(statd, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        while True:
            try:
                data, anc, _, peer = s.recvmsg(2048, 256, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            dst = None
            for level, kind, val in anc:
                if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                    dst = val[8:12]
            xid = data[:4]
            body = struct.pack('>I', statd_port) if s is pmap else b''
            reply = xid + struct.pack('>IIIII', 1, 0, 0, 0, 0) + body
            s.sendmsg([reply], [(socket.IPPROTO_IP, IP_PKTINFO, struct.pack('=I4s4s', 0, dst, b'\0\0\0\0'))], 0, peer)
`;

async function notifyMany(dir: string): Promise<void> {
  const responder = spawn('python3', ['-c', RESPONDER], { stdio: ['ignore', 'pipe', 'inherit'] });
  const pmapPort = await new Promise<number>((resolve) => responder.stdout!.once('data', (d) => resolve(Number(String(d).trim()))));
  try {
    const store = new NsmStore(dir);
    await Promise.all(Array.from({ length: N }, (_, i) => store.put({ monName: `c${i}`, address: hostAddress(i), serverAddress: '127.0.0.3', local: true, callbacks: [], since: 0 })));
    const nsm = new Nsm({ store, sender: new RpcNsmSender({ portmapperPort: pmapPort, attemptTimeoutMs: 5_000 }) });
    await nsm.bumpState('127.0.0.3');
    for (const concurrency of [256, 1024]) {
      const t0 = process.hrtime.bigint();
      const rep = await nsm.notify('127.0.0.3', { timeoutMs: 30_000, concurrency });
      console.log(`notify ${N} hosts (concurrency ${concurrency}): ${ms(t0).toFixed(0)} ms, ${rep.notified.length} answered, ${rep.failed.length} failed`);
    }
    await nsm.close();
  } finally {
    responder.kill();
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'nsm-bench-'));
  try {
    // NSM_BENCH=mon,load,notify picks parts (default: all).
    const only = new Set((process.env.NSM_BENCH ?? 'mon,load,notify').split(','));
    if (only.has('mon')) await smMonRate(path.join(dir, 'mon'));
    if (only.has('load')) await loadRecords(path.join(dir, 'load'));
    if (only.has('notify')) await notifyMany(path.join(dir, 'notify'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
