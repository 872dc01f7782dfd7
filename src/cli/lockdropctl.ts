// lockdropctl: the operator's commands over the control socket. Tables for people; --json on
// every command for scripts (`locks --json` prints one JSON object per line, one per lock).
import { Command, InvalidArgumentError } from 'commander';
import { isIP } from 'node:net';
import type { AddressStatus, DropReport, GraceReport, LockView, MonitorView, NotifyReport, StatusReport, WatchEvent } from '../daemon/protocol';
import { ControlError, DEFAULT_CONTROL, request, watch } from './client';
import { formatTable } from './table';
import { positive, runCommand } from './args';

interface Common {
  control: string;
  json?: boolean;
}

const ipArg = (v: string): string => {
  if (isIP(v) === 0) throw new InvalidArgumentError(`"${v}" is not an IP address`);
  return v;
};
const uintArg = (v: string): number => {
  if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`"${v}" is not a non-negative integer`);
  return Number(v);
};
const print = (s: string): void => void process.stdout.write(s.endsWith('\n') ? s : s + '\n');
const printJson = (v: unknown): void => print(JSON.stringify(v, null, 2));
const when = (iso: string | null): string => (iso === null ? '-' : new Date(iso).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z'));
const remaining = (iso: string | null): string => (iso === null ? '-' : `${Math.max(0, Math.round((Date.parse(iso) - Date.now()) / 1000))}s left`);

function statusText(s: StatusReport): string {
  const head = [
    `lockdropd pid ${s.pid} (version ${s.version}), up since ${when(s.startedAt)}`,
    `NLM port ${s.nlmPort}, NSM port ${s.nsmPort}, rpcbind ${s.rpcbind ? 'registered' : 'not registered'}`,
    `sources: ${s.sources.map((x) => (x.active ? x.name : `${x.name} (off: ${x.reason ?? 'unavailable'})`)).join(', ')}`,
    `${s.locks} locks, ${s.blocked} blocked, ${s.monitors} monitored hosts${s.globalGrace ? `, global grace until ${when(s.globalGrace)}` : ''}`,
    ...s.exportGraces.map((g) => `export ${g.export}: grace until ${when(g.grace)} (${remaining(g.grace)})`),
    '',
  ];
  const row = (a: AddressStatus) => [a.address, a.present ? 'yes' : 'no', a.draining ? 'yes' : 'no', a.grace ? remaining(a.grace) : '-', a.locks, a.monitors];
  return head.join('\n') + formatTable(['ADDRESS', 'PRESENT', 'DRAINING', 'GRACE', 'LOCKS', 'MONITORS'], s.addresses.map(row));
}

function locksText(locks: LockView[]): string {
  if (locks.length === 0) return 'no locks';
  const row = (l: LockView) => [l.server, l.client, l.svid, l.exclusive ? 'write' : 'read', l.offset, l.length === '0' ? 'EOF' : l.length, l.export ?? '-', l.fh.length > 24 ? `${l.fh.slice(0, 24)}…` : l.fh, when(l.since)];
  return formatTable(['SERVER', 'CLIENT', 'SVID', 'TYPE', 'OFFSET', 'LENGTH', 'EXPORT', 'FH', 'SINCE'], locks.map(row));
}

function watchText(e: WatchEvent): string {
  return `${e.at.slice(11, 23)}  ${e.kind.padEnd(8)}  ${e.message}`;
}

export function buildProgram(): Command {
  const program = new Command('lockdropctl')
    .description('Administer a running lockdropd through its control socket (root only).')
    .showHelpAfterError()
    .exitOverride();

  const cmd = (name: string, description: string): Command =>
    program
      .command(name)
      .description(description)
      .option('--control <path>', 'control socket', DEFAULT_CONTROL)
      .option('--json', 'machine-readable output')
      .exitOverride();

  cmd('status', 'the daemon, its sources and every server address').action(async (o: Common) => {
    const s = await request<StatusReport>(o.control, { cmd: 'status' });
    o.json ? printJson(s) : print(statusText(s));
  });

  cmd('locks', 'held locks, optionally of one server address, client or export')
    .option('--ip <address>', 'server address the locks were taken through', ipArg)
    .option('--client <host>', 'client: caller name, address, or name@address')
    .option('--export <path>', 'export path')
    .action(async (o: Common & { ip?: string; client?: string; export?: string }) => {
      const locks = await request<LockView[]>(o.control, { cmd: 'locks', ip: o.ip, client: o.client, export: o.export });
      if (o.json) for (const l of locks) print(JSON.stringify(l));
      else print(locksText(locks));
    });

  cmd('drop', 'release locks now: of a server address, a client, or an export')
    .option('--ip <address>', 'every lock taken through this server address', ipArg)
    .option('--client <host>', 'every lock of this client (caller name, address, or name@address)')
    .option('--export <path>', 'every lock on this export')
    .option('--fsid <n>', 'every lock on the export with this fsid', uintArg)
    .action(async (o: Common & { ip?: string; client?: string; export?: string; fsid?: number }) => {
      const given = [o.ip, o.client, o.export, o.fsid].filter((v) => v !== undefined).length;
      if (given !== 1) throw new ControlError('drop needs exactly one of --ip, --client, --export, --fsid');
      const r = await request<DropReport>(o.control, { cmd: 'drop', ip: o.ip, client: o.client, export: o.export, fsid: o.fsid });
      o.json
        ? printJson(r)
        : print(`${r.target}: dropped ${r.locks} locks, ${r.shares} shares and ${r.blocked} blocked requests of ${r.clients} clients in ${r.ms.toFixed(1)} ms (${r.woken} waiters granted)`);
    });

  cmd('grace', 'start or end the grace period of one server address (or of one export, on every address)')
    .argument('<action>', 'start | end', (v: string) => {
      if (v !== 'start' && v !== 'end') throw new InvalidArgumentError('must be "start" or "end"');
      return v;
    })
    .option('--ip <address>', 'server address', ipArg)
    .option('--export <path>', 'export (its grace covers every address)')
    .option('--seconds <s>', 'length of the grace period (start; default: the configured grace)', positive)
    .action(async (action: 'start' | 'end', o: Common & { ip?: string; export?: string; seconds?: number }) => {
      if ((o.ip === undefined) === (o.export === undefined)) throw new ControlError('grace needs exactly one of --ip, --export');
      const r = await request<GraceReport>(o.control, { cmd: 'grace', action, ip: o.ip, export: o.export, seconds: o.seconds });
      const name = r.scope === 'export' ? `export ${r.target}` : r.target;
      o.json ? printJson(r) : print(r.grace ? `${name}: grace until ${when(r.grace)} (${remaining(r.grace)})` : `${name}: no grace period`);
    });

  cmd('monitors', 'client hosts monitored (NSM records), per server address')
    .option('--ip <address>', 'only this server address', ipArg)
    .action(async (o: Common & { ip?: string }) => {
      const m = await request<MonitorView[]>(o.control, { cmd: 'monitors', ip: o.ip });
      if (o.json) printJson(m);
      else print(m.length ? formatTable(['SERVER', 'HOST', 'ADDRESS', 'STATE'], m.map((x) => [x.server, x.host, x.address ?? '-', x.state ?? '-'])) : 'no monitored hosts');
    });

  cmd('notify', 'send SM_NOTIFY from a server address to every host recorded for it')
    .requiredOption('--ip <address>', 'server address', ipArg)
    .action(async (o: Common & { ip: string }) => {
      const r = await request<NotifyReport>(o.control, { cmd: 'notify', ip: o.ip }, 20 * 60_000);
      if (o.json) printJson(r);
      else print(`${r.address}: notified ${r.notified.length} hosts${r.failed.length ? `; no answer from ${r.failed.join(', ')}` : ''}`);
      if (r.failed.length) process.exitCode = 1;
    });

  cmd('watch', 'follow address events, drops, grants and grace changes live (Ctrl-C to stop)').action(async (o: Common) => {
    await new Promise<void>((resolve, reject) => {
      let stop: (() => void) | undefined;
      const onSignal = () => {
        stop?.();
        resolve();
      };
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      watch(o.control, (e) => print(o.json ? JSON.stringify(e) : watchText(e)), (err) => (err ? reject(err) : resolve())).then((s) => (stop = s), reject);
    });
  });

  return program;
}

export const main = (argv: string[] = process.argv): Promise<number> => runCommand('lockdropctl', buildProgram(), argv);

