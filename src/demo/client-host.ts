// A demo NFS client host: holds NLM locks through server addresses and runs the small part of
// a status monitor a client needs — it answers SM_NOTIFY and then reclaims, as a kernel NFS
// client's lockd does after statd tells it a server rebooted. Driven by JSON lines on stdin
// ({"do":"lock","server":A,"count":N} / {"do":"try","server":A,"offset":O}); reports JSON lines on stdout.
import { createInterface } from 'node:readline';
import { NlmClient, type LockSpec } from '../nlm';
import { NSM_PROGRAM, NSM_VERSION, SM_NOTIFY, SM_NULL, decodeStatChge, decodeVoid, encodeVoid, type StatChge } from '../nsm';
import { RpcServer, registerWithRpcbind, type Procedure } from '../rpc';

interface Held extends LockSpec { server: string }

const say = (event: string, fields: Record<string, unknown> = {}): void =>
  void process.stdout.write(`${JSON.stringify({ event, at: Date.now(), ...fields })}\n`);

export async function runClientHost(name: string, address: string): Promise<void> {
  const clients = new Map<string, NlmClient>();
  const held: Held[] = [];
  const fh = Buffer.from(`demo-file-of-${name}`);

  const clientFor = async (server: string): Promise<NlmClient> => {
    let c = clients.get(server);
    if (!c) {
      c = await NlmClient.create({ server: { address: server }, transport: 'udp', vers: 4, callerName: name, source: address, timeoutMs: 3_000 });
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

  const notify: Procedure<StatChge, undefined> = {
    name: 'SM_NOTIFY', decodeArgs: decodeStatChge, encodeResult: encodeVoid,
    handle: (args, ctx) => {
      say('sm-notify', { from: ctx.peer.address, monName: args.monName, state: args.state });
      void reclaim(args).catch((err) => say('error', { what: 'reclaim', error: String(err) }));
      return undefined;
    },
  };
  const statd = new RpcServer();
  statd.register({
    prog: NSM_PROGRAM, vers: NSM_VERSION,
    procedures: new Map<number, Procedure<any, any>>([
      [SM_NULL, { name: 'SM_NULL', decodeArgs: decodeVoid, encodeResult: encodeVoid, handle: () => undefined, idempotent: true }],
      [SM_NOTIFY, notify],
    ]),
  });
  statd.listen({ port: 0 });
  await statd.addAddress(address);
  await registerWithRpcbind(
    ['udp', 'tcp'].map((protocol) => ({ prog: NSM_PROGRAM, vers: NSM_VERSION, protocol: protocol as 'udp' | 'tcp', port: statd.port })),
    { mode: 'auto' },
  );
  say('ready', { name, address, statdPort: statd.port });

  for await (const line of createInterface({ input: process.stdin })) {
    try {
      const cmd = JSON.parse(line) as { do: string; server: string; count?: number; offset?: number };
      const c = await clientFor(cmd.server);
      if (cmd.do === 'lock') {
        const base = held.length;
        const specs = Array.from({ length: cmd.count ?? 1 }, (_, i): Held => ({ server: cmd.server, fh, svid: 1000 + base + i, offset: BigInt((base + i) * 100), length: 100n, exclusive: true }));
        const started = Date.now();
        const results = await Promise.all(specs.map((s) => c.lock(s)));
        results.forEach((r, i) => r.status === 'granted' && held.push(specs[i]!));
        say('locked', { server: cmd.server, statuses: tally(results.map((r) => r.status)), ms: Date.now() - started });
      } else if (cmd.do === 'try') {
        const r = await c.lock({ fh, svid: 1, offset: BigInt(cmd.offset ?? 1e6), length: 1n, exclusive: true });
        say('tried', { server: cmd.server, status: r.status });
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
