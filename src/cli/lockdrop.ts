// lockdrop: the umbrella command. `lockdrop demo` runs the failover demo (src/demo), `lockdrop
// demo --active-active` the scene of two nodes serving one directory;
// `lockdrop record --out FILE` records the kernel's address notifications as a pcap trace
// (LINKTYPE_NETLINK) that `lockdropd --replay FILE` and Wireshark read; `lockdrop import-statd`
// brings rpc.statd's records over to one server address; `lockdrop store migrate` moves a stopped
// cluster's state between a state directory and etcd.
import { isIP } from 'node:net';
import { Command, InvalidArgumentError } from 'commander';
import { readFileSync } from 'node:fs';
import { collectList, positive, runCommand, UsageError, wantsJson, withConventions } from './args';
import { migrateStore } from './store-migrate';
import { importStatd } from './import-statd';
import { plural } from '../failover';
import { openRtnetlink } from '../addon';
import { runActiveActiveDemo, runDemo } from '../demo';
import { recordTrace } from '../watch/record';

export function buildProgram(json = false): Command {
  const program = withConventions(new Command('lockdrop'), json).description('lockdrop: NFS lock manager for highly available NFS');

  program
    .command('demo')
    .description('a failover in network namespaces: locks dropped per address and kept for their owners, SM_NOTIFY and a grace that ends once they reclaim')
    .option('--grace <seconds>', 'grace period on the takeover node', positive)
    .option('--locks <n>', 'locks each client takes', positive)
    .option('--plain-ip', 'move the address with ip addr del/add even when IPaddr2 is installed')
    .option('--active-active', 'instead: two nodes serve one directory through their own addresses; a moved lock waits for its owner\'s reclaim before the other node\'s waiter gets it')
    .action(async (o: { grace?: number; locks?: number; plainIp?: boolean; activeActive?: boolean }) => {
      const r = o.activeActive
        ? await runActiveActiveDemo({ plainIp: o.plainIp })
        : await runDemo({ graceSeconds: o.grace, locksPerClient: o.locks, plainIp: o.plainIp });
      if (r.leftovers.length) process.exitCode = 1;
    });

  program
    .command('record')
    .description('record rtnetlink address and link notifications to a pcap file until Ctrl-C (or --seconds)')
    .requiredOption('--out <file>', 'pcap file to write')
    .option('--seconds <s>', 'stop after this long', positive)
    .action(async (o: { out: string; seconds?: number }) => {
      const socket = openRtnetlink();
      const rec = recordTrace({ out: o.out, transport: socket });
      await rec.ready;
      process.stderr.write(`recording to ${o.out}: Ctrl-C to stop\n`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve).once('SIGTERM', resolve);
        if (o.seconds) setTimeout(resolve, o.seconds * 1000);
      });
      await rec.stop();
      socket.close();
      process.stderr.write(`${rec.count} records, ${rec.overflows} overflows\n`);
    });

  program
    .command('import-statd')
    .description("import rpc.statd's records (sm/, sm.bak/, state) as one server address's records in lockdropd's state directory (with lockdropd stopped)")
    .option('--from <dir>', "rpc.statd's state directory", '/var/lib/nfs')
    .requiredOption('--ip <address>', 'the server address the records belong to (the floating address clients mounted)', (v: string) => {
      if (isIP(v) === 0) throw new InvalidArgumentError(`"${v}" is not an IP address`);
      return v;
    })
    .option('--state-dir <dir>', "lockdropd's state directory", '/var/lib/lockdrop')
    .option('--json', 'machine-readable output')
    .action(async (o: { from: string; ip: string; stateDir: string; json?: boolean }) => {
      const r = await importStatd({ from: o.from, address: o.ip, stateDir: o.stateDir });
      if (o.json) return void process.stdout.write(`${JSON.stringify(r)}\n`);
      const lines = [
        `imported ${plural(r.records, 'host')} from ${r.from} for ${r.address} into ${r.stateDir}${r.state !== null ? ` (rpc.statd's state ${r.state})` : ''}`,
        ...r.skipped.map((s) => `skipped ${s.path}: ${s.reason}`),
        `lockdropd notifies them from ${r.address} when it arrives. rpc.statd's sm.bak/ still lists hosts to notify: keep sm-notify from telling them too (systemctl mask rpc-statd-notify.service rpc-statd.service).`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });

  const store = program.command('store').description("the cluster's state: a shared state directory or etcd");
  store
    .command('migrate')
    .description("move a stopped cluster's state (lock journals, NSM records and state numbers per floating address) between a state directory and etcd")
    .requiredOption('--from <dir|etcd>', 'where the state is: a state directory, or etcd')
    .requiredOption('--to <dir|etcd>', 'where it goes: etcd, or a state directory')
    .option('--endpoints <urls>', 'etcd members, comma-separated (http(s)://host:port)', collectList)
    .option('--prefix <key>', "the cluster's etcd prefix (store.etcd.prefix)", '/lockdrop/default')
    .option('--tls-ca <file>', "PEM of the CA of the members' certificates")
    .option('--tls-cert <file>', 'client certificate (PEM)')
    .option('--tls-key <file>', 'client key (PEM)')
    .option('--json', 'machine-readable output')
    .action(async (o: { from: string; to: string; endpoints?: string[]; prefix: string; tlsCa?: string; tlsCert?: string; tlsKey?: string; json?: boolean }) => {
      if (!o.endpoints?.length) throw new UsageError('--endpoints is required: the etcd members (http(s)://host:port, comma-separated)');
      const tls = o.tlsCa === undefined ? undefined : { ca: readFileSync(o.tlsCa), cert: o.tlsCert === undefined ? undefined : readFileSync(o.tlsCert), key: o.tlsKey === undefined ? undefined : readFileSync(o.tlsKey) };
      const r = await migrateStore({ from: o.from, to: o.to, etcd: { endpoints: o.endpoints, prefix: o.prefix, tls } });
      if (o.json) return void process.stdout.write(`${JSON.stringify(r)}\n`);
      const lines = [
        `migrated ${plural(r.addresses.length, 'address', 'addresses')} from ${r.from} to ${r.to}`,
        ...r.addresses.map((a) => `  ${a.address}: ${plural(a.entries, 'journal entry', 'journal entries')}, ${plural(a.hosts, 'monitored host')}, state ${a.state ?? '-'}`),
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });

  return program;
}

export const main = (argv: string[] = process.argv): Promise<number> => {
  const json = wantsJson(argv);
  return runCommand('lockdrop', buildProgram(json), argv, json);
};
