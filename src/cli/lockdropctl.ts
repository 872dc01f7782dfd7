// lockdropctl: the operator's commands over the control socket. Tables for people; --json for
// scripts: every listing (locks, monitors) is one JSON object per line, every other answer one
// JSON object, and an error one JSON object on stderr. The global options (--control, --config,
// --json) go before or after the subcommand.
import { Command, InvalidArgumentError } from 'commander';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { readConfigFile } from '../daemon/config';
import { LOG_LEVELS, type AddressStatus, type CheckReport, type DropReport, type ExportView, type ExportsReport, type GraceReport, type LockView, type LogLevelReport, type MonitorView, type NotifyReport, type ReloadReport, type StatusReport, type WatchEvent, type RestartReport } from '../control';
import { ControlError, DEFAULT_CONTROL, request, watch } from './client';
import { formatTable } from './table';
import { UsageError, nonNegativeInteger, positive, runCommand, wantsJson, withConventions } from './args';
import { checkDaemon } from './check';
import { plural } from '../failover';

interface Globals {
  control?: string;
  config?: string;
  json?: boolean;
}

const ipArg = (v: string): string => {
  if (isIP(v) === 0) throw new InvalidArgumentError(`"${v}" is not an IP address`);
  return v;
};
const print = (s: string): void => void process.stdout.write(s.endsWith('\n') ? s : s + '\n');
/** One JSON value per line: a listing is one line per item, anything else one line. */
const printJson = (v: unknown): void => print(JSON.stringify(v));
const printListing = (items: unknown[]): void => {
  if (items.length) print(items.map((i) => JSON.stringify(i)).join('\n'));
};
const when = (iso: string | null): string => (iso === null ? '-' : new Date(iso).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z'));
const remaining = (iso: string | null): string => (iso === null ? '-' : `${Math.max(0, Math.round((Date.parse(iso) - Date.now()) / 1000))}s left`);

/**
 * --control, else the configuration file's `control`, else $LOCKDROP_CONTROL or the default. The
 * file is read, not validated: `reload` of a file with mistakes must still reach the daemon, which
 * names them (and keeps listening where it started: `control` changes only at a restart).
 */
function controlPath(g: Globals): string {
  if (g.control) return g.control;
  if (g.config) {
    let control: unknown;
    try {
      control = readConfigFile(g.config).control;
    } catch {
      // unreadable or not YAML: the daemon (at the default place) says what is wrong with it
    }
    if (typeof control === 'string' && control !== '') return control;
  }
  return DEFAULT_CONTROL;
}

function statusText(s: StatusReport): string {
  const head = [
    `lockdropd pid ${s.pid} (version ${s.version}), up since ${when(s.startedAt)}${s.ready === false ? ', starting' : ''}`,
    `NLM port ${s.nlmPort}, NSM port ${s.nsmPort}, rpcbind ${s.rpcbind ? 'registered' : 'not registered'}`,
    `sources: ${s.sources.map((x) => (x.active ? x.name : `${x.name} (off: ${x.reason ?? 'unavailable'})`)).join(', ')}`,
    `${plural(s.locks, 'lock')}, ${s.blocked} blocked, ${plural(s.monitors, 'monitored host')}${s.globalGrace ? `, global grace until ${when(s.globalGrace)}` : ''}`,
    ...s.exportGraces.map((g) => `export ${g.export}: grace until ${when(g.grace)} (${remaining(g.grace)})`),
    ...(s.store && s.store.kind !== 'none' ? [`cluster store: ${s.store.kind}, ${s.store.ok ? 'ok' : `NOT OK (${s.store.reason ?? 'unavailable'}): new grants refused`}`] : []),
    '',
  ];
  const reclaim = (a: AddressStatus): string => (a.reclaim ? `${a.reclaim.total - a.reclaim.awaiting}/${a.reclaim.total} of ${plural(a.reclaim.hosts, 'host')}` : '-');
  const row = (a: AddressStatus) => [a.address, a.present ? 'yes' : a.heldBy ? `no (lease: ${a.heldBy})` : 'no', a.draining ? 'yes' : 'no', a.grace ? remaining(a.grace) : '-', reclaim(a), a.locks, a.journal, a.monitors];
  return head.join('\n') + formatTable(['ADDRESS', 'PRESENT', 'DRAINING', 'GRACE', 'RECLAIMED', 'LOCKS', 'JOURNAL', 'MONITORS'], s.addresses.map(row));
}

function locksText(locks: LockView[]): string {
  if (locks.length === 0) return 'no locks';
  const row = (l: LockView) => [l.server, l.client, l.svid, l.exclusive ? 'write' : 'read', l.offset, l.length === '0' ? 'EOF' : l.length, l.export ?? '-', l.fh.length > 24 ? `${l.fh.slice(0, 24)}…` : l.fh, when(l.since), l.awaitingReclaim ? 'awaiting reclaim' : 'held'];
  return formatTable(['SERVER', 'CLIENT', 'SVID', 'TYPE', 'OFFSET', 'LENGTH', 'EXPORT', 'FH', 'SINCE', 'STATE'], locks.map(row));
}

function exportsText(r: ExportsReport): string {
  const id = (e: ExportView): string =>
    e.fsid !== undefined ? `fsid=${e.fsid}` : e.ganeshaExportId !== undefined ? `Export_Id=${e.ganeshaExportId}` : e.uuid !== undefined ? `uuid=${e.uuid}${e.fsRoot === false ? `+ino ${e.rootIno}` : ''}` : e.dev !== undefined ? `dev=${e.dev}` : e.fhPrefix?.length ? `prefix ${e.fhPrefix.join(',')}` : '-';
  const squash = (e: ExportView): string => (e.allSquash ? 'all' : e.rootSquash === false ? 'none' : 'root');
  const row = (e: ExportView) => [e.path, e.overrides ? `${e.from} (over ${e.overrides})` : e.from, id(e), e.clients.length ? e.clients.join(',') : '*', e.secure ? 'secure' : 'insecure', squash(e), e.noAuthNlm ? 'no' : 'yes', e.fileLocks === false ? 'memory' : 'files'];
  const s = r.source;
  const head = s ? [`following ${s.server}'s ${s.file}${s.readAt ? `, read ${when(s.readAt)}` : ''}${s.error ? `; last look failed: ${s.error}` : ''}`, ...s.notes.map((n) => `  note: ${n}`), ''] : [];
  return head.join('\n') + (r.exports.length ? formatTable(['PATH', 'FROM', 'HANDLES', 'CLIENTS', 'PORT', 'SQUASH', 'LOCK ACCESS', 'LOCKS ON'], r.exports.map(row)) : 'no exports');
}

function watchText(e: WatchEvent): string {
  return `${e.at.slice(11, 23)}  ${e.kind.padEnd(8)}  ${e.message}`;
}

export function buildProgram(json = false): Command {
  const program = withConventions(new Command('lockdropctl'), json)
    .description('Administer a running lockdropd through its control socket (root only).')
    .option('--control <path>', `control socket (default ${DEFAULT_CONTROL}, or $LOCKDROP_CONTROL)`)
    .option('--config <file>', "lockdropd's configuration file: its control socket (and, for check, its ports)")
    .option('--json', 'machine-readable output (errors too, on stderr)');

  const cmd = (name: string, description: string): Command => program.command(name).description(description);
  viewCommands(cmd);
  actionCommands(cmd);
  liveCommands(cmd);
  logCommands(cmd);
  return program;
}

/** A subcommand of lockdropctl; its action gets the global options merged with its own. */
type Subcommand = (name: string, description: string) => Command;
const globals = <T extends object = object>(c: Command): Globals & T => c.optsWithGlobals<Globals & T>();

/** What the daemon holds: status, locks, monitors. */
function viewCommands(cmd: Subcommand): void {
  cmd('status', 'the daemon, its sources and every server address').action(async (_o, c: Command) => {
    const g = globals(c);
    const s = await request<StatusReport>(controlPath(g), { cmd: 'status' });
    g.json ? printJson(s) : print(statusText(s));
  });

  cmd('locks', 'held locks (and those awaiting their client\'s reclaim), optionally of one server address, client or export')
    .option('--ip <address>', 'server address the locks were taken through', ipArg)
    .option('--address <address>', 'the same as --ip', ipArg)
    .option('--client <host>', 'client: caller name, address, or name@address')
    .option('--export <path>', 'export path')
    .option('--file <path>', 'who holds this file: its path on this node (any handle a client named it by)')
    .option('--fh <hex>', 'the locks of this NFS file handle (hex, as locks --json shows it)')
    .action(async (_o, c: Command) => {
      const o = globals<{ ip?: string; address?: string; client?: string; export?: string; file?: string; fh?: string }>(c);
      if (o.ip !== undefined && o.address !== undefined && o.ip !== o.address) throw new UsageError('--ip and --address name one server address: give one');
      const file = o.file === undefined ? undefined : resolve(o.file);
      const locks = await request<LockView[]>(controlPath(o), { cmd: 'locks', ip: o.ip ?? o.address, client: o.client, export: o.export, file, fh: o.fh });
      o.json ? printListing(locks) : print(locksText(locks));
    });

  cmd('monitors', 'client hosts monitored (NSM records), per server address')
    .option('--ip <address>', 'only this server address', ipArg)
    .action(async (_o, c: Command) => {
      const o = globals<{ ip?: string }>(c);
      const m = await request<MonitorView[]>(controlPath(o), { cmd: 'monitors', ip: o.ip });
      if (o.json) printListing(m);
      else print(m.length ? formatTable(['SERVER', 'HOST', 'ADDRESS', 'STATE'], m.map((x) => [x.server, x.host, x.address ?? '-', x.state ?? '-'])) : 'no monitored hosts');
    });
}

/** What the operator changes: drop, grace, notify, reload, restart. */
function actionCommands(cmd: Subcommand): void {
  cmd('drop', 'release locks now: of a server address, a client, or an export')
    .option('--ip <address>', 'every lock taken through this server address', ipArg)
    .option('--client <host>', 'every lock of this client (caller name, address, or name@address)')
    .option('--export <path>', 'every lock on this export')
    .option('--fsid <n>', 'every lock on the export with this fsid', nonNegativeInteger)
    .action(async (_o, c: Command) => {
      const o = globals<{ ip?: string; client?: string; export?: string; fsid?: number }>(c);
      const given = [o.ip, o.client, o.export, o.fsid].filter((v) => v !== undefined).length;
      if (given !== 1) throw new UsageError('drop needs exactly one of --ip, --client, --export, --fsid');
      const r = await request<DropReport>(controlPath(o), { cmd: 'drop', ip: o.ip, client: o.client, export: o.export, fsid: o.fsid });
      o.json
        ? printJson(r)
        : print(`${r.target}: dropped ${plural(r.locks, 'lock')}, ${plural(r.shares, 'share')} and ${plural(r.blocked, 'blocked request')} of ${plural(r.clients, 'client')} in ${r.ms.toFixed(1)} ms (${plural(r.woken, 'waiter')} granted)`);
    });

  cmd('grace', 'start or end the grace period of one server address (or of one export, on every address)')
    .argument('<action>', 'start | end', (v: string) => {
      if (v !== 'start' && v !== 'end') throw new InvalidArgumentError('must be "start" or "end"');
      return v;
    })
    .option('--ip <address>', 'server address', ipArg)
    .option('--export <path>', 'export (its grace covers every address)')
    .option('--seconds <s>', 'length of the grace period (start; default: the configured grace)', positive)
    .action(async (action: 'start' | 'end', _o, c: Command) => {
      const o = globals<{ ip?: string; export?: string; seconds?: number }>(c);
      if ((o.ip === undefined) === (o.export === undefined)) throw new UsageError('grace needs exactly one of --ip, --export');
      const r = await request<GraceReport>(controlPath(o), { cmd: 'grace', action, ip: o.ip, export: o.export, seconds: o.seconds });
      const name = r.scope === 'export' ? `export ${r.target}` : r.target;
      o.json ? printJson(r) : print(r.grace ? `${name}: grace until ${when(r.grace)} (${remaining(r.grace)})` : `${name}: no grace period`);
    });

  cmd('notify', 'send SM_NOTIFY from a server address to every host recorded for it')
    .requiredOption('--ip <address>', 'server address', ipArg)
    .action(async (_o, c: Command) => {
      const o = globals<{ ip: string }>(c);
      const r = await request<NotifyReport>(controlPath(o), { cmd: 'notify', ip: o.ip }, 20 * 60_000);
      if (o.json) printJson(r);
      else print(`${r.address}: notified ${plural(r.notified.length, 'host')}${r.failed.length ? `; no answer from ${r.failed.join(', ')}` : ''}`);
      if (r.failed.length) process.exitCode = 1;
    });

  cmd('reload', 're-read the configuration file and apply it; fails, naming the bad keys, when it is invalid').action(async (_o, c: Command) => {
    const o = globals(c);
    const r = await request<ReloadReport>(controlPath(o), { cmd: 'reload' });
    if (o.json) return printJson(r);
    print(`configuration reloaded${r.changed.length ? `: ${r.changed.join(', ')}` : ' (no change)'}${r.needsRestart.length ? `; ${r.needsRestart.join(', ')}: at the next start` : ''}`);
  });

  cmd('exports', "the exports lockdrop serves, each with where it came from (the configuration, knfsd's etab, Ganesha's EXPORT blocks)").action(async (_o, c: Command) => {
    const o = globals(c);
    const r = await request<ExportsReport>(controlPath(o), { cmd: 'exports' });
    if (o.json) return printListing(r.exports);
    print(exportsText(r));
  });
  cmd('restart', 'restart lockdropd keeping every lock: a new process inherits its open files (no grace, no SM_NOTIFY); under systemd use systemctl restart')
    .option('--timeout <s>', 'how long to wait for the new process (default 60)', positive)
    .action(async (_o, c: Command) => {
      const o = globals<{ timeout?: number }>(c);
      const t0 = Date.now();
      const old = await request<RestartReport>(controlPath(o), { cmd: 'restart' });
      const until = t0 + (o.timeout ?? 60) * 1000;
      // Ready once a process other than the old one answers on the control socket.
      for (;;) {
        const s = await request<StatusReport>(controlPath(o), { cmd: 'status' }, 2_000).catch(() => undefined);
        if (s && s.pid !== old.pid && s.ready) {
          const r = { from: old.pid, pid: s.pid, ms: Date.now() - t0, locks: s.locks };
          return o.json ? printJson(r) : print(`restarted: lockdropd[${old.pid}] → lockdropd[${s.pid}] in ${(r.ms / 1000).toFixed(2)} s, ${plural(s.locks, 'lock')} kept`);
        }
        if (Date.now() > until) throw new ControlError(`lockdropd[${old.pid}] was asked to restart, but no new lockdropd answered within ${o.timeout ?? 60} s (see its log)`);
        await new Promise((r) => setTimeout(r, 50));
      }
    });

}

/** The daemon's log level at run time (until its next reload or start). */
function logCommands(cmd: Subcommand): void {
  cmd('log-level', 'set the log level until the next reload or start (as ganesha_mgr set_log)')
    .argument('<level>', LOG_LEVELS.join(' | '), (v: string) => {
      if (!(LOG_LEVELS as readonly string[]).includes(v)) throw new InvalidArgumentError(`must be one of ${LOG_LEVELS.join(', ')}`);
      return v;
    })
    .action(async (level: string, _o, c: Command) => {
      const o = globals(c);
      const r = await request<LogLevelReport>(controlPath(o), { cmd: 'log-level', level: level as LogLevelReport['level'] });
      o.json ? printJson(r) : print(`log level ${r.level} (was ${r.previous}) until the next reload or start`);
    });
}

/** Watching the daemon: check (for cluster monitors) and watch. */
function liveCommands(cmd: Subcommand): void {
  cmd('check', 'is lockdropd serving? its status, then an NLM NULL call (UDP and TCP) on every address it holds (for cluster monitors)')
    .option('--ip <address>', 'also require this address to be held and answering', ipArg)
    .option('--released <address>', 'also require this address to be released: not held, no lock left through it', ipArg)
    .option('--timeout <s>', 'seconds to wait for each answer (default 2)', positive)
    .action(async (_o, c: Command) => {
      const o = globals<{ ip?: string; released?: string; timeout?: number }>(c);
      const r: CheckReport = await checkDaemon(controlPath(o), { ip: o.ip, released: o.released, timeoutMs: (o.timeout ?? 2) * 1000 });
      if (o.json) printJson(r);
      else print(r.ok ? `lockdropd ${r.pid} serves ${r.answered.join(', ')}` : `lockdropd not serving: ${r.problems.join('; ')}`);
      if (!r.ok) process.exitCode = 1;
    });

  cmd('watch', 'follow address events, drops, grants and grace changes live (Ctrl-C to stop)').action(async (_o, c: Command) => {
    const o = globals(c);
    await new Promise<void>((resolve, reject) => {
      let stop: (() => void) | undefined;
      let stopped = false;
      const onSignal = () => {
        stopped = true;
        stop?.();
        resolve();
      };
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      const onEnd = (err?: Error) => {
        if (stopped) return resolve();
        // The daemon went away (or refused us) while we watched: that is a failure of `watch`.
        reject(err ?? new ControlError('the daemon closed the watch stream (stopped?)'));
      };
      watch(controlPath(o), (e) => print(o.json ? JSON.stringify(e) : watchText(e)), onEnd).then((s) => (stop = s), reject);
    });
  });
}

export const main = (argv: string[] = process.argv): Promise<number> => {
  const json = wantsJson(argv);
  return runCommand('lockdropctl', buildProgram(json), argv, json);
};
