// An experiment for issue 15: the TCP transport on a worker thread, the lock table on the main
// one. The worker accepts, reads, frames and writes; once per turn of its loop it hands the main
// thread every record it read (one copy into one buffer, one postMessage); the main thread runs
// them through the same RpcDispatcher + NLM service + LockTable as bench/nlm-lock.ts serve and
// hands back every reply of the batch the same way. Measured against that server with the same
// C generator (bench/profile-tcp.sh's): what the hand-over costs per RPC and whether it buys RPC/s.
//
//   npx tsx bench/worker-transport.ts [ADDRESS]   (prints {port, pid} like nlm-lock.ts serve)
import net from 'node:net';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { LockTable } from '../src/locks';
import { createNlmService } from '../src/nlm';
import { LAST_FRAGMENT, newCredentialCache, RecordDecoder, RpcDispatcher, type CallMeta } from '../src/rpc';

/** Records or replies of one turn: connection ids, their windows, and the bytes. */
interface Batch { ids: Int32Array; ends: Int32Array; bytes: Uint8Array }
type Hello = { kind: 'open'; id: number; local: { address: string; port: number }; peer: { address: string; port: number } } | { kind: 'closed'; id: number } | { kind: 'port'; port: number };

function pack(items: { id: number; buf: Buffer; start: number; end: number }[]): Batch {
  let size = 0;
  for (const it of items) size += it.end - it.start;
  const bytes = new Uint8Array(size);
  const ids = new Int32Array(items.length);
  const ends = new Int32Array(items.length);
  let at = 0;
  items.forEach((it, i) => {
    bytes.set(it.buf.subarray(it.start, it.end), at);
    at += it.end - it.start;
    ids[i] = it.id;
    ends[i] = at;
  });
  return { ids, ends, bytes };
}

function transport(address: string): void {
  const port = parentPort!;
  const sockets = new Map<number, net.Socket>();
  let nextId = 1;
  let pending: { id: number; buf: Buffer; start: number; end: number }[] = [];
  let scheduled = false;
  const send = (): void => {
    scheduled = false;
    const b = pack(pending);
    pending = [];
    port.postMessage(b, [b.bytes.buffer as ArrayBuffer, b.ids.buffer as ArrayBuffer, b.ends.buffer as ArrayBuffer]);
  };
  const server = net.createServer({ noDelay: true }, (socket) => {
    const id = nextId++;
    sockets.set(id, socket);
    port.postMessage({ kind: 'open', id, local: { address, port: (server.address() as net.AddressInfo).port }, peer: { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 } } satisfies Hello);
    const decoder = new RecordDecoder(1 << 20);
    socket.on('data', (chunk) => {
      decoder.feed(chunk, (buf, start, end) => void pending.push({ id, buf, start, end }));
      if (!scheduled && pending.length > 0) {
        scheduled = true;
        setImmediate(send);
      }
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      sockets.delete(id);
      port.postMessage({ kind: 'closed', id } satisfies Hello);
    });
  });
  port.on('message', (b: Batch) => {
    // The replies of one connection in one write, each with its record mark.
    const bytes = Buffer.from(b.bytes.buffer, b.bytes.byteOffset, b.bytes.byteLength);
    let from = 0;
    for (let i = 0; i < b.ids.length;) {
      const id = b.ids[i]!;
      let j = i;
      let size = 0;
      while (j < b.ids.length && b.ids[j] === id) size += 4 + b.ends[j]! - (j === 0 ? 0 : b.ends[j - 1]!), j++;
      const out = Buffer.allocUnsafe(size);
      let at = 0;
      for (let k = i; k < j; k++) {
        const end = b.ends[k]!;
        out.writeUInt32BE(LAST_FRAGMENT + end - from, at);
        bytes.copy(out, at + 4, from, end);
        at += 4 + end - from;
        from = end;
      }
      sockets.get(id)?.write(out);
      i = j;
    }
  });
  server.listen({ host: address, port: 0 }, () => port.postMessage({ kind: 'port', port: (server.address() as net.AddressInfo).port } satisfies Hello));
}

function main(address: string): void {
  let service: ReturnType<typeof createNlmService> | undefined;
  const table = new LockTable({ onBlockGranted: (g) => service!.onBlockGranted(g) });
  service = createNlmService({ table });
  const dispatcher = new RpcDispatcher();
  for (const p of service.programs) dispatcher.register(p);
  const metas = new Map<number, CallMeta>();
  // tsx's hooks do not reach a worker: it registers them itself.
  const worker = new Worker(`require('tsx/cjs'); require(${JSON.stringify(__filename)});`, { eval: true, workerData: { address } });
  worker.on('message', (m: Hello | Batch) => {
    if ('kind' in m) {
      if (m.kind === 'open') metas.set(m.id, { transport: 'tcp', local: m.local, peer: m.peer, credentials: newCredentialCache() });
      else if (m.kind === 'closed') metas.delete(m.id);
      else console.log(JSON.stringify({ port: m.port, pid: process.pid }));
      return;
    }
    const msg = Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength);
    const replies: { id: number; buf: Buffer; start: number; end: number }[] = [];
    for (let i = 0, from = 0; i < m.ids.length; from = m.ends[i]!, i++) {
      const meta = metas.get(m.ids[i]!);
      if (!meta) continue;
      const r = dispatcher.handle(msg, meta, from, m.ends[i]!);
      if (r instanceof Promise) throw new Error('an asynchronous answer: not in this experiment');
      if (r) replies.push({ id: m.ids[i]!, buf: r, start: 0, end: r.length });
    }
    const b = pack(replies);
    worker.postMessage(b, [b.bytes.buffer as ArrayBuffer, b.ids.buffer as ArrayBuffer, b.ends.buffer as ArrayBuffer]);
  });
}

if (isMainThread) main(process.argv[2] ?? '127.0.0.1');
else transport((workerData as { address: string }).address);
