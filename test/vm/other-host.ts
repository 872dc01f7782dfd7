// Another NFS client host, in a namespace of its own: lockdrop's userspace NLM client driven by
// JSON lines on stdin ({"id":1,"do":"lock"|"unlock"|"test","server":A,"fh":HEX,"offset":N,
// "length":N,"svid":N,"reclaim"?:true}); answers {"id":1,"status":…} on stdout.
import { createInterface } from 'node:readline';
import { NlmClient } from '../../src/nlm';

interface Request { id: number; do: 'lock' | 'unlock' | 'test'; server: string; fh: string; offset: number; length: number; svid: number; reclaim?: boolean }

async function main(name: string, address: string): Promise<void> {
  const clients = new Map<string, NlmClient>();
  /** One reserved source port per server address, kept when its client is made again. */
  const ports = new Map<string, number>();
  const clientFor = async (server: string): Promise<NlmClient> => {
    let c = clients.get(server);
    if (!c) {
      // From a reserved port, as a kernel's lockd calls: exports are "secure" by default.
      c = await NlmClient.create({ server: { address: server }, transport: 'udp', vers: 4, callerName: name, source: address, sourcePort: ports.get(server) ?? ports.set(server, 800 + ports.size).get(server)!, timeoutMs: 3_000 });
      clients.set(server, c);
    }
    return c;
  };
  process.stdout.write(`${JSON.stringify({ id: 0, status: 'ready' })}\n`);
  for await (const line of createInterface({ input: process.stdin })) {
    const r = JSON.parse(line) as Request;
    const spec = { fh: Buffer.from(r.fh, 'hex'), svid: r.svid, offset: BigInt(r.offset), length: BigInt(r.length), exclusive: true };
    const call = async (): Promise<string> => {
      const c = await clientFor(r.server);
      const res = r.do === 'lock' ? await c.lock({ ...spec, reclaim: r.reclaim ?? false }) : r.do === 'unlock' ? await c.unlock(spec) : await c.test(spec);
      return res.status;
    };
    let status: string;
    try {
      status = await call();
    } catch {
      // The address moved to a node whose lockd has another port: ask its rpcbind again, once.
      await clients.get(r.server)?.close();
      clients.delete(r.server);
      status = await call().catch((err: Error) => `error: ${err.message}`);
    }
    process.stdout.write(`${JSON.stringify({ id: r.id, status })}\n`);
  }
  await Promise.all([...clients.values()].map((c) => c.close()));
}

const [name, address] = process.argv.slice(2);
if (!name || !address) throw new Error('usage: other-host NAME ADDRESS');
void main(name, address);
