// lockdrop: the umbrella command. `lockdrop demo` runs the failover demo (src/demo), `lockdrop
// demo --active-active` the scene of two nodes serving one directory;
// `lockdrop record --out FILE` records the kernel's address notifications as a pcap trace
// (LINKTYPE_NETLINK) that `lockdropd --replay FILE` and Wireshark read.
import { Command } from 'commander';
import { positive, runCommand } from './args';
import { openRtnetlink } from '../addon';
import { runActiveActiveDemo, runDemo } from '../demo';
import { recordTrace } from '../watch/record';

export function buildProgram(): Command {
  const program = new Command('lockdrop').description('lockdrop: NFS lock manager for highly available NFS').showHelpAfterError().exitOverride();

  program
    .command('demo')
    .description('a failover in network namespaces: locks dropped per address, grace and SM_NOTIFY on the takeover node')
    .option('--grace <seconds>', 'grace period on the takeover node', positive)
    .option('--locks <n>', 'locks each client takes', positive)
    .option('--plain-ip', 'move the address with ip addr del/add even when IPaddr2 is installed')
    .option('--active-active', 'instead: two nodes serve one directory through their own addresses; a drop on one lets the other\'s waiter in')
    .exitOverride()
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
    .exitOverride()
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

  return program;
}

export const main = (argv: string[] = process.argv): Promise<number> => runCommand('lockdrop', buildProgram(), argv);
