// lockdropd: the daemon. Flags override the config file, which overrides embedded defaults.
// SIGHUP reloads (address filter, exports, log level, hold-down, …) without dropping a lock;
// SIGTERM/SIGINT stop gracefully; with --fd-store under systemd, SIGTERM hands every lock to its
// file descriptor store instead (a planned restart, src/daemon/restart.ts), and a lockdropd started
// with descriptors (LISTEN_FDS) takes them back. Exit codes: 0 stopped cleanly, 1 could not start,
// 64 (EX_USAGE) a usage error, 78 (EX_CONFIG) invalid configuration, a bad flag value included.
import { Command, InvalidArgumentError, Option } from 'commander';
import pino, { type Logger } from 'pino';
import { ConfigError, LOG_FORMATS, LOG_LEVELS, SOURCES, loadConfig, type ConfigInput } from '../daemon/config';
import { textDestination } from '../daemon/log-text';
import { Daemon, StartupError } from '../daemon/daemon';
import { Readiness, statusLine, systemdNotify } from '../daemon/readiness';
import { closeInherited, inheritedDescriptors, readHandOver, removeFromStore, type HandOver } from '../daemon/restart';
import { EX_CONFIG, collectList, commanderExit, nonNegativeInteger, positive, text, withConventions } from './args';

const sourceList = (v: string): string[] => {
  const list = text(v).split(',').map((s) => s.trim()).filter(Boolean);
  const bad = list.filter((s) => !(SOURCES as readonly string[]).includes(s));
  if (bad.length) throw new InvalidArgumentError(`unknown source ${bad.join(', ')} (known: ${SOURCES.join(', ')})`);
  return list;
};

interface Flags {
  config?: string;
  stateDir?: string;
  nlmPort?: number;
  nsmPort?: number;
  rpcbind?: 'auto' | 'off' | 'takeover';
  control?: string;
  grace?: number;
  holdDown?: number;
  sources?: string[];
  pollInterval?: number;
  address?: string[];
  logLevel?: string;
  logFormat?: string;
  metrics?: string;
  replay?: string;
  printConfig?: boolean;
  fdStore?: boolean;
}

export function buildProgram(): Command {
  return withConventions(new Command('lockdropd'), false)
    .description('NFS lock manager (NLM + NSM) that drops the locks of a floating IP the moment it leaves and runs grace for an arriving IP alone.')
    .option('--config <file>', 'YAML or JSON configuration file (flags override it)', text)
    .option('--state-dir <dir>', 'NSM records per server address and the instance lock (default /var/lib/lockdrop)', text)
    .option('--nlm-port <port>', 'NLM port, 0 = ephemeral (registered with rpcbind)', nonNegativeInteger)
    .option('--nsm-port <port>', 'statd port, 0 = ephemeral', nonNegativeInteger)
    .addOption(new Option('--rpcbind <mode>', 'register with the local rpcbind; auto refuses to start while another live lock manager holds NLM or statd, takeover registers over it').choices(['auto', 'off', 'takeover']))
    .option('--control <path>', 'control socket for lockdropctl (default /run/lockdrop/control.sock)', text)
    .option('--grace <seconds>', 'grace period of an arriving address (default 90)', positive)
    .option('--hold-down <ms>', 'ignore a removal undone within this time (default 0)', nonNegativeInteger)
    .option('--sources <list>', `address sources, comma-separated (${SOURCES.join(',')})`, sourceList)
    .option('--poll-interval <seconds>', 'seconds between poll snapshots (default 2)', positive)
    .option('--address <addr>', 'a floating address or CIDR to manage; repeat it or separate with commas (default: every non-loopback address)', collectList)
    .addOption(new Option('--log-level <level>', 'log level').choices([...LOG_LEVELS]))
    .addOption(new Option('--log-format <format>', 'json (default) or text: a level word, for the console and journald').choices([...LOG_FORMATS]))
    .option('--metrics <host:port>', 'serve Prometheus metrics on http://host:port/metrics', text)
    .option('--replay <file>', 'take address events from a recorded trace (pcap) instead of the live sources', text)
    .option('--fd-store', "on SIGTERM under systemd, hand every lock to the unit's file descriptor store (FileDescriptorStoreMax=): the next start takes them back, no grace, no SM_NOTIFY")
    .option('--print-config', 'print the effective configuration as JSON and exit');
}

/** Flags as config keys: only what was given. */
function flagsToConfig(f: Flags): Partial<ConfigInput> {
  const out: Record<string, unknown> = {
    stateDir: f.stateDir,
    nlmPort: f.nlmPort,
    nsmPort: f.nsmPort,
    rpcbind: f.rpcbind,
    control: f.control,
    grace: f.grace,
    holdDown: f.holdDown,
    sources: f.sources,
    pollInterval: f.pollInterval,
    addresses: f.address,
    logLevel: f.logLevel,
    logFormat: f.logFormat,
    metrics: f.metrics,
    replay: f.replay,
  };
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined)) as Partial<ConfigInput>;
}

/** How often STATUS= is refreshed for `systemctl status` (sent only when it changed). */
const STATUS_INTERVAL_MS = 2_000;

function fail(message: string, code: number, log?: Logger): number {
  log?.fatal(message);
  process.stderr.write(`lockdropd: ${message}\n`);
  return code;
}

/**
 * The previous lockdropd's hand-over, when this one was started with descriptors: checked, or
 * refused as a whole (logged, its descriptors closed and removed from systemd's store): then
 * this start is a crash's, the journal keeps the floating addresses' locks for their owners.
 */
function inherited(cfg: Parameters<typeof Daemon.start>[0], log: Logger): HandOver | undefined {
  let names: Iterable<string> = [];
  try {
    const inh = inheritedDescriptors();
    if (!inh) return undefined;
    names = inh.byName.keys();
    try {
      return readHandOver(inh, cfg);
    } catch (err) {
      closeInherited(inh);
      throw err;
    }
  } catch (err) {
    log.error({ err: (err as Error).message }, `planned restart: the hand-over cannot be used (${(err as Error).message}): starting as after a crash, every inherited descriptor closed; the floating addresses' clients reclaim from their journals`);
    const socket = process.env.NOTIFY_SOCKET;
    if (socket) {
      try {
        removeFromStore(socket, names);
      } catch (e) {
        log.error({ err: (e as Error).message }, `cannot remove the refused descriptors from the file descriptor store: ${(e as Error).message}`);
      }
    }
    return undefined;
  }
}

/** Runs the daemon until a stop signal; resolves with the exit code. */
export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildProgram();
  try {
    program.parse(argv);
  } catch (err) {
    return commanderExit(err, EX_CONFIG) ?? 1;
  }
  const f = program.opts<Flags>();
  const flags = flagsToConfig(f);
  let cfg;
  try {
    cfg = loadConfig(f.config, flags);
  } catch (err) {
    if (err instanceof ConfigError) return fail(err.message, EX_CONFIG);
    throw err;
  }
  if (f.printConfig) {
    process.stdout.write(JSON.stringify(cfg, null, 2) + '\n');
    return 0;
  }
  const options = { level: cfg.logLevel, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  const log = cfg.logFormat === 'text' ? pino(options, textDestination(pino.destination({ dest: 1, sync: true }))) : pino(options);
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, `uncaught exception: ${err.message}`);
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    log.fatal({ err }, `unhandled rejection: ${(err as Error)?.message ?? String(err)}`);
    process.exit(1);
  });
  // Signals are taken from the start: one arriving while the daemon starts waits for it.
  let daemon: Daemon | undefined;
  let stopRequested: string | undefined;
  let stopping = false;
  let done: (code: number) => void = () => undefined;
  const exited = new Promise<number>((resolve) => (done = resolve));
  const store = f.fdStore ? process.env.NOTIFY_SOCKET : undefined;
  const stop = (signal: string, handOver = signal === 'SIGTERM' && store !== undefined): void => {
    if (!daemon) {
      stopRequested ??= signal;
      return;
    }
    if (stopping) {
      log.warn(`${signal} again: exiting at once`);
      done(1);
      return;
    }
    stopping = true;
    log.info({ signal }, `${signal}: ${handOver ? 'handing over' : 'stopping'}`);
    (handOver ? daemon.handOver(store) : daemon.stop()).then(
      () => done(0),
      (err: Error) => {
        log.error({ err }, 'stop failed');
        done(1);
      },
    );
  };
  const reload = (): void => {
    if (!daemon) return void log.warn('SIGHUP while starting: ignored');
    try {
      daemon.reloadFromFile();
    } catch {
      // logged by the daemon; the running configuration stays
    }
  };
  process.on('SIGHUP', reload);
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  const readiness = new Readiness(systemdNotify(log), log);
  const handOver = inherited(cfg, log);
  try {
    daemon = await Daemon.start(cfg, log, { loadConfig: () => loadConfig(f.config, flags), readiness, handOver, onRestart: () => stop('restart', true) });
  } catch (err) {
    if (err instanceof StartupError) {
      readiness.status(`failed to start: ${err.message}`);
      return fail(err.message, err.badConfig ? EX_CONFIG : 1, log);
    }
    throw err;
  }
  if (readiness.enabled) {
    // `systemctl status` follows the addresses, locks and graces.
    const d = daemon;
    setInterval(() => readiness.status(statusLine(d.status())), STATUS_INTERVAL_MS).unref();
  }
  if (stopRequested) stop(stopRequested);
  return exited;
}
