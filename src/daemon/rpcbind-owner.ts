// One lockdropd per rpcbind. Clients find NLM (100021) and statd (100024) through the local
// rpcbind, so whoever registered last owns them. At start, a registration that points at a
// live listener that is not ours (the kernel's lockd started with nfsd, rpc.statd, another
// lockdropd) refuses the start, naming who holds it, unless told to take over; one that points
// at nothing (left by a crash) is replaced. Afterwards the registration is checked: lost
// (rpcbind restarted) it is made again; taken by another live service it is reported and left
// alone, or taken back in takeover mode. rpcbind tells nobody of a change, so the check runs
// every second, and at once after every write to knfsd's control files (/proc/fs/nfsd: rpc.nfsd
// writes `threads` to start or stop nfsd, and the kernel's lockd has unregistered NLM — ours
// too — and registered its own before that write returns), which closes the window in which a
// client would find the kernel's lockd. On stop only what still points at us is removed.
import { watch, type FSWatcher } from 'node:fs';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { NLM_PROG } from '../nlm';
import { NSM_PROGRAM } from '../nsm';
import { RpcReplyError, callOnce, dumpRpcbind, registerWithRpcbind, type RpcbindEntry, type RpcbindMapping, type RpcbindRegistration } from '../rpc';

const run = promisify(execFile);

export type RpcbindMode = 'auto' | 'off' | 'takeover';

/** After a check that could not tell who holds NLM, the next one. */
const UNKNOWN_RETRY_MS = 200;

const PROGRAM_NAMES: Record<number, string> = { [NLM_PROG]: 'NLM (100021)', [NSM_PROGRAM]: 'statd (100024)' };

/** A registration of one of our programs that answers, on a port that is not ours. */
export interface RpcbindHolder {
  prog: number;
  netid: string;
  port: number;
  /** Who listens there: "rpc.statd[812]", or the kernel (no process holds a kernel socket). */
  holder: string;
  /** No process holds the socket: the kernel's own (lockd). */
  kernel: boolean;
  /** Who listens could not be told (ss failed or was too slow, or the socket just closed). */
  unknown?: boolean;
}

/** "NLM (100021) on port 4045/udp+tcp and statd (100024) on port 4046/udp+tcp are registered with rpcbind by rpc.statd[812]", per holder. */
export function describeHolders(holders: readonly RpcbindHolder[]): string {
  const byHolder = new Map<string, Map<string, string[]>>();
  for (const h of holders) {
    const programs = byHolder.get(h.holder) ?? new Map<string, string[]>();
    byHolder.set(h.holder, programs);
    const key = `${PROGRAM_NAMES[h.prog] ?? h.prog} on port ${h.port}`;
    programs.set(key, [...(programs.get(key) ?? []), h.netid]);
  }
  return [...byHolder].map(([holder, programs]) => {
    const what = [...programs].map(([p, netids]) => `${p}/${netids.join('+')}`);
    return `${what.join(' and ')} ${what.length === 1 ? 'is' : 'are'} registered with rpcbind by ${holder}`;
  }).join('; ');
}

/** Does anything answer a NULL call of prog/vers on this netid and port? Any RPC reply counts (a version mismatch too). */
async function answers(m: RpcbindMapping): Promise<boolean> {
  const host = m.netid.endsWith('6') ? '::1' : '127.0.0.1';
  try {
    await callOnce({ transport: m.netid.startsWith('tcp') ? 'tcp' : 'udp', host, port: m.port, timeoutMs: 600, retransmitMs: 200 }, m.prog, m.vers, 0, () => undefined, () => undefined);
    return true;
  } catch (err) {
    return err instanceof RpcReplyError;
  }
}

/** A process's name for people: the script an interpreter runs (`node /usr/bin/lockdropd` is lockdropd), else its comm. */
async function commandName(pid: number, comm: string): Promise<string> {
  try {
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    if (/^(node|nodejs|python3?)$/.test(basename(argv[0] ?? '')) && argv[1] && !argv[1].startsWith('-')) return basename(argv[1]);
  } catch {
    // gone, or not ours to read
  }
  return comm;
}

/** Every listening TCP and UDP socket with its process, from the kernel's socket table (ss, as peer.ts), in one call; undefined when ss failed. */
async function socketTable(): Promise<string[] | undefined> {
  try {
    const { stdout } = await run('ss', ['-H', '-l', '-n', '-p', '-t', '-u'], { timeout: 5_000 });
    return stdout.split('\n').filter((l) => l.trim());
  } catch {
    return undefined;
  }
}

/** Who listens on a local port of the netid's protocol (IPv4 or IPv6 alike), from socketTable's lines. */
async function listener(table: readonly string[] | undefined, netid: string, port: number): Promise<{ holder: string; kernel: boolean; unknown?: boolean }> {
  const proto = netid.startsWith('tcp') ? 'tcp' : 'udp';
  // "udp UNCONN 0 0 [::]:32768 [::]:* users:((...))": netid, state, queues, local address:port.
  const lines = (table ?? []).filter((l) => {
    const f = l.trim().split(/\s+/);
    return f[0] === proto && f[4]?.slice(f[4].lastIndexOf(':') + 1) === String(port);
  });
  for (const l of lines) {
    const m = /users:\(\("([^"]+)",pid=(\d+)/.exec(l);
    if (m) return { holder: `${await commandName(Number(m[2]), m[1]!)}[${m[2]}]`, kernel: false };
  }
  if (lines.length) return { holder: "the kernel (no process holds the socket: the kernel's lockd, started with nfsd?)", kernel: true };
  return { holder: `an unknown listener on port ${port}`, kernel: false, unknown: true };
}

/** The live registrations of NLM and statd that are not on our ports. */
export async function liveHolders(mappings: readonly RpcbindMapping[], ourPort: (prog: number) => number): Promise<RpcbindHolder[]> {
  const seen = new Set<string>();
  const candidates = mappings.filter((m) => {
    if (!(m.prog in PROGRAM_NAMES) || m.port === 0 || m.port === ourPort(m.prog) || !/^(udp|tcp)6?$/.test(m.netid)) return false;
    const key = `${m.prog}/${m.netid}/${m.port}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  const live = (await Promise.all(candidates.map(async (m) => ((await answers(m)) ? m : undefined)))).filter((m): m is RpcbindMapping => m !== undefined);
  const table = live.length ? await socketTable() : undefined;
  return Promise.all(live.map(async (m) => ({ prog: m.prog, netid: m.netid, port: m.port, ...(await listener(table, m.netid, m.port)) })));
}

export interface RpcbindKeeperOptions {
  mode: RpcbindMode;
  /** What we register (ports known once the listeners are bound). */
  entries: () => RpcbindEntry[];
  log: Logger;
  /** Between checks of the registration. Default 1 s. */
  intervalMs?: number;
  /** knfsd's control files, watched for rpc.nfsd's writes (default /proc/fs/nfsd; tests point it elsewhere). */
  nfsdDir?: string;
  /** rpcbind's socket (tests point it elsewhere). */
  socketPath?: string;
}

export class RpcbindKeeper {
  private registration: RpcbindRegistration | undefined;
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  /** Last reported trouble, so that a lasting one is logged once. */
  private trouble: string | undefined;
  private nfsd: FSWatcher | undefined;
  /** A check asked for while one runs: it runs again right after. */
  private again = false;
  registered = false;

  constructor(private readonly opts: RpcbindKeeperOptions) {}

  private ourPort = (prog: number): number => this.opts.entries().find((e) => e.prog === prog)?.port ?? -1;

  /** Registers; throws when a live service that is not this daemon holds NLM or statd (mode auto). */
  async start(): Promise<void> {
    const { mode, log } = this.opts;
    if (mode === 'off') {
      log.info('rpcbind registration is off');
      return;
    }
    let mappings: RpcbindMapping[];
    try {
      mappings = (await dumpRpcbind({ socketPath: this.opts.socketPath })).mappings;
    } catch (err) {
      this.report(`rpcbind is not reachable (${(err as Error).message}): NLM and statd are not registered, clients cannot find them; registering once it answers`);
      this.schedule();
      return;
    }
    const holders = await liveHolders(mappings, this.ourPort);
    if (holders.length && mode === 'auto') {
      throw new Error(`${describeHolders(holders)}: another lock manager is running (stop it, or start lockdropd with --rpcbind takeover)`);
    }
    if (holders.length) log.warn({ holders }, `taking over: ${describeHolders(holders)}`);
    await this.register('registered with rpcbind');
    this.schedule();
  }

  /** Watches knfsd's control files, once they are there (nfsd's filesystem may be mounted later). */
  private watchNfsd(): void {
    if (this.nfsd || this.opts.mode === 'off') return;
    try {
      this.nfsd = watch(this.opts.nfsdDir ?? '/proc/fs/nfsd', () => this.checkNow());
      this.nfsd.on('error', () => {
        this.nfsd?.close();
        this.nfsd = undefined;
      });
    } catch {
      // not mounted (no knfsd here, or not yet): the periodic check tries again
    }
  }

  /** A check now (or right after the one under way): rpc.nfsd just changed what the kernel's lockd registered. */
  checkNow(): void {
    if (!this.timer) return;
    if (this.checking) {
      this.again = true;
      return;
    }
    this.checking = this.check().finally(() => {
      this.checking = undefined;
      if (this.again && this.timer) {
        this.again = false;
        this.checkNow();
      }
    });
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.nfsd?.close();
    this.nfsd = undefined;
    await this.checking;
    await this.registration?.unregister();
    this.registered = false;
  }

  private schedule(): void {
    this.watchNfsd();
    this.timer = setTimeout(() => {
      this.checkNow();
      this.schedule();
    }, this.opts.intervalMs ?? 1_000);
    this.timer.unref();
  }

  private async register(what: string): Promise<void> {
    const reg = await registerWithRpcbind(this.opts.entries(), { mode: 'auto', socketPath: this.opts.socketPath });
    this.registration = reg;
    this.registered = reg.registered;
    if (reg.registered) {
      this.trouble = undefined;
      this.opts.log.info({ via: reg.via }, `${what} (${reg.via})`);
    } else this.report(`not registered with rpcbind: ${reg.reason}`);
  }

  /** Is our registration still there? Made again when lost; left alone when another live service took it. */
  private async check(): Promise<void> {
    let mappings: RpcbindMapping[];
    try {
      mappings = (await dumpRpcbind({ socketPath: this.opts.socketPath })).mappings;
    } catch (err) {
      this.registered = false;
      return this.report(`rpcbind is not reachable (${(err as Error).message}): registering again once it answers`);
    }
    const missing = this.opts.entries().filter((e) => !mappings.some((m) => m.prog === e.prog && m.vers === e.vers && m.netid === e.protocol && m.port === e.port));
    if (missing.length === 0) {
      this.registered = true;
      this.trouble = undefined;
      return;
    }
    const holders = await liveHolders(mappings, this.ourPort);
    // In takeover mode the kernel's lockd is overridden again: beside knfsd it registers anew at
    // every nfsd restart. Never a process: two lockdropds told to take over would take turns.
    const retake = this.opts.mode === 'takeover' && holders.every((h) => h.kernel);
    // Not told who holds it (ss too slow right after nfsd started): look again soon rather than give up until the next period.
    if (this.opts.mode === 'takeover' && !retake && holders.some((h) => h.unknown) && holders.every((h) => h.kernel || h.unknown)) {
      this.registered = false;
      this.report(`${describeHolders(holders)}: looking again to tell who holds it`);
      setTimeout(() => this.checkNow(), UNKNOWN_RETRY_MS).unref();
      return;
    }
    if (holders.length && !retake) {
      this.registered = false;
      return this.report(`${describeHolders(holders)}: another lock manager took the registration over; not taking it back${this.opts.mode === 'takeover' ? '' : ' (restart lockdropd with --rpcbind takeover to)'}`, 'error');
    }
    if (holders.length) this.opts.log.warn({ holders }, `taking the registration back: ${describeHolders(holders)}`);
    await this.register(`rpcbind had lost ${[...new Set(missing.map((e) => PROGRAM_NAMES[e.prog] ?? e.prog))].join(' and ')} (restarted?): registered again`);
  }

  private report(message: string, level: 'warn' | 'error' = 'warn'): void {
    if (message === this.trouble) return;
    this.trouble = message;
    this.opts.log[level](message);
  }
}
