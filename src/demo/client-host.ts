// A demo NFS client host: holds NLM locks through server addresses, serves GRANTED callbacks
// for its blocked requests, and runs the small part of a status monitor a client needs — it
// answers SM_NOTIFY and then reclaims, as a kernel NFS client's lockd does after statd tells it a
// server rebooted. Driven by JSON lines on stdin, reports JSON lines on stdout:
//   {"do":"lock","server":A,"count":N}                      N ranges of 100 bytes  → locked
//   {"do":"try","server":A,"offset":O,"length":L,"block":B}  one lock (svid 1)      → tried, later granted
//   {"do":"test","server":A,"offset":O,"length":L}          TEST                   → tested
//   {"do":"unlock","server":A}                              every "lock" through A → unlocked
// Each may name the file by its NFS handle ("fh": hex); else the host's own made-up handle.
import { createInterface } from 'node:readline';
import { NlmClient, type GrantedCallback, type LockSpec } from '../nlm';
import type { StatChge } from '../nsm';
import { serveStatusMonitor } from './statd-responder';

interface Held extends LockSpec { server: string }

/** The made-up file handle a client host locks when a command names none. */
export const demoFileOf = (name: string): Buffer => Buffer.from(`demo-file-of-${name}`);

const say = (event: string, fields: Record<string, unknown> = {}): void =>
  void process.stdout.write(`${JSON.stringify({ event, at: Date.now(), ...fields })}\n`);

export async function runClientHost(name: string, address: string): Promise<void> {
  const clients = new Map<string, NlmClient>();
  const held: Held[] = [];
  const ownFh = demoFileOf(name);

  const clientFor = async (server: string): Promise<NlmClient> => {
    let c = clients.get(server);
    if (!c) {
      // Callbacks registered with this host's rpcbind, as a kernel client's lockd has them.
      c = await NlmClient.create({ server: { address: server }, transport: 'udp', vers: 4, callerName: name, source: address, timeoutMs: 3_000, callback: { rpcbind: true } });
      c.on('granted', (g: GrantedCallback) => say('granted', { server, svid: g.lock.svid, offset: Number(g.lock.offset), length: Number(g.lock.length), from: g.from.address }));
      clients.set(server, c);
    }
    return c;
  };

  const reclaim = async (notice: StatChge): Promise<void> => {
    const server = notice.monName;
    const mine = held.filter((h) => h.server === server);
    const started = Date.now();
    // A server that restarted forgot everything: it gets a fresh connection and every lock again.
    await clients.get(server)?.close();
    clients.delete(server);
    const c = await clientFor(server);
    const results = await Promise.all(mine.map((h) => c.lock({ ...h, reclaim: true, state: notice.state })));
    const granted = results.filter((r) => r.status === 'granted').length;
    say('reclaimed', { server, granted, of: mine.length, ms: Date.now() - started });
  };

  const statd = await serveStatusMonitor([address], (args, ctx) => {
    say('sm-notify', { from: ctx.peer.address, monName: args.monName, state: args.state });
    void reclaim(args).catch((err) => say('error', { what: 'reclaim', error: String(err) }));
  });
  say('ready', { name, address, statdPort: statd.port });

  for await (const line of createInterface({ input: process.stdin })) {
    try {
      const cmd = JSON.parse(line) as { do: string; server: string; count?: number; offset?: number; length?: number; block?: boolean; fh?: string };
      const c = await clientFor(cmd.server);
      const fh = cmd.fh === undefined ? ownFh : Buffer.from(cmd.fh, 'hex');
      const range = { offset: BigInt(cmd.offset ?? 1e6), length: BigInt(cmd.length ?? 1) };
      if (cmd.do === 'lock') {
        const base = held.length;
        const specs = Array.from({ length: cmd.count ?? 1 }, (_, i): Held => ({ server: cmd.server, fh, svid: 1000 + base + i, offset: BigInt((base + i) * 100), length: 100n, exclusive: true }));
        const started = Date.now();
        const results = await Promise.all(specs.map((s) => c.lock(s)));
        results.forEach((r, i) => r.status === 'granted' && held.push(specs[i]!));
        say('locked', { server: cmd.server, statuses: tally(results.map((r) => r.status)), ms: Date.now() - started });
      } else if (cmd.do === 'try') {
        const r = await c.lock({ fh, svid: 1, ...range, exclusive: true, block: cmd.block ?? false });
        say('tried', { server: cmd.server, status: r.status });
      } else if (cmd.do === 'test') {
        const r = await c.test({ fh, svid: 1, ...range, exclusive: true });
        const h = r.holder;
        say('tested', { server: cmd.server, status: r.status, holder: h && { svid: h.svid, offset: Number(h.offset), length: Number(h.length), exclusive: h.exclusive } });
      } else if (cmd.do === 'unlock') {
        // Given up: no longer this host's to reclaim.
        const mine = held.filter((h) => h.server === cmd.server);
        held.splice(0, held.length, ...held.filter((h) => h.server !== cmd.server));
        const results = await Promise.all(mine.map((h) => c.unlock(h)));
        say('unlocked', { server: cmd.server, statuses: tally(results.map((r) => r.status)) });
      }
    } catch (err) {
      say('error', { what: line, error: err instanceof Error ? err.message : String(err) });
    }
  }
  await Promise.all([...clients.values()].map((c) => c.close()));
  await statd.close();
}

const tally = (xs: string[]): Record<string, number> =>
  xs.reduce<Record<string, number>>((acc, x) => ({ ...acc, [x]: (acc[x] ?? 0) + 1 }), {});

if (require.main === module) {
  const [name, address] = process.argv.slice(2);
  if (!name || !address) {
    process.stderr.write('usage: client-host NAME ADDRESS\n');
    process.exit(2);
  }
  runClientHost(name, address).then(() => process.exit(0), (err) => {
    say('error', { what: 'start', error: String(err) });
    process.exit(1);
  });
}
