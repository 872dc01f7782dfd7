// A small NFS cluster in network namespaces, for the demo and the end-to-end tests: hosts on one
// bridge, each with its own network and mount namespace (so each runs its own rpcbind on port
// 111, as real machines do). Everything it creates it records, and dispose() removes it all.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { ConfigInput } from '../daemon/config';

export interface LabHost {
  name: string;
  /** The host's network namespace. */
  netns: string;
  /** Its fixed address on the lab network. */
  address: string;
  /** The interface facing the bridge, inside the host. */
  nic: string;
  /** pid of the host's rpcbind: its mount, UTS and network namespaces are the host's (its host name is `netns`). */
  anchorPid: number;
}

type Json = Record<string, any>;

const REPO = path.resolve(__dirname, '..', '..');

const run = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const tryRun = (cmd: string, args: string[]): void => {
  try { run(cmd, args); } catch { /* already gone */ }
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class Lab {
  private readonly namespaces: string[] = [];
  private readonly children = new Set<ChildProcess>();
  /** Daemons by control socket, with the tail of their stderr. */
  private readonly daemons = new Map<string, { child: ChildProcess; stderr: string[] }>();
  private disposed = false;

  /** `prefix` keeps concurrent labs apart; `subnet` is the first three octets of the lab network. */
  constructor(readonly prefix: string, readonly subnet = '10.77.0') {}

  get bridgeNetns(): string { return `${this.prefix}-br`; }

  /** The bridge everyone plugs into lives in a namespace of its own. */
  async start(): Promise<void> {
    this.addNetns(this.bridgeNetns);
    run('ip', ['-n', this.bridgeNetns, 'link', 'add', 'br0', 'type', 'bridge']);
    run('ip', ['-n', this.bridgeNetns, 'link', 'set', 'br0', 'up']);
  }

  /** A host with one NIC on the bridge, its address, and its own rpcbind. */
  async addHost(name: string, hostNumber: number): Promise<LabHost> {
    const netns = `${this.prefix}-${name}`;
    const address = `${this.subnet}.${hostNumber}`;
    this.addNetns(netns);
    const outside = `v${this.prefix.slice(-6)}${hostNumber}`.slice(0, 15);
    run('ip', ['link', 'add', outside, 'netns', this.bridgeNetns, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
    run('ip', ['-n', this.bridgeNetns, 'link', 'set', outside, 'master', 'br0', 'up']);
    run('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    run('ip', ['-n', netns, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
    run('ip', ['-n', netns, 'link', 'set', 'eth0', 'up']);
    // rpcbind anchors the host's mount and UTS namespaces: a private /run holds its socket, and the
    // host has a name of its own (lockdropd's instance lock in a shared state directory is per host name).
    const anchor = spawn('ip', ['netns', 'exec', netns, 'unshare', '--mount', '--uts', '--propagation', 'private', 'sh', '-c',
      `hostname ${netns} && mount -t tmpfs lab-run /run && mkdir -p /run/lock /run/rpcbind && exec rpcbind -f -w`], { stdio: 'ignore' });
    this.children.add(anchor);
    const host: LabHost = { name, netns, address, nic: 'eth0', anchorPid: anchor.pid! };
    for (let i = 0; i < 50; i++) {
      try {
        if (this.exec(host, 'rpcinfo', ['-p', '127.0.0.1']).includes('portmapper')) return host;
      } catch { /* not up yet */ }
      await sleep(100);
    }
    throw new Error(`rpcbind did not start on lab host ${name}`);
  }

  /** Runs a command on a host (its network and mount namespace) and returns its output. */
  exec(host: LabHost, cmd: string, args: string[], env?: NodeJS.ProcessEnv): string {
    return execFileSync('nsenter', ['-t', String(host.anchorPid), '-n', '-m', '-u', '--', cmd, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
  }

  /** Starts a long-running process on a host; it is killed by dispose(). */
  spawn(host: LabHost, cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): ChildProcess {
    const child = spawn('nsenter', ['-t', String(host.anchorPid), '-n', '-m', '-u', '--', cmd, ...args], { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Starts lockdropd on a host with its state (and control socket, config) in `dir`; `nodeArgs` go to node (say, --cpu-prof). */
  startDaemon(host: LabHost, dir: string, config: Partial<ConfigInput>, onLine?: (j: Json) => void, onStderr?: (line: string) => void, env?: NodeJS.ProcessEnv, nodeArgs: string[] = []): { control: string; log: JsonLines; child: ChildProcess } {
    const control = path.join(dir, 'control.sock');
    const file = path.join(dir, 'lockdrop.json');
    writeFileSync(file, JSON.stringify({ stateDir: dir, control, metrics: null, ...config }));
    const child = this.spawn(host, process.execPath, [...nodeArgs, path.join(REPO, 'bin', 'lockdropd'), '--config', file], { env: { ...process.env, ...env } });
    // Its last words, for waitForControl to say why a daemon never came up.
    const started = { child, stderr: [] as string[] };
    this.daemons.set(control, started);
    createInterface({ input: child.stderr! }).on('line', (line) => {
      started.stderr.push(line);
      if (started.stderr.length > 20) started.stderr.shift();
      onStderr?.(line);
    });
    return { control, log: new JsonLines(child, onLine), child };
  }

  /**
   * Asks a host's lockdropd over its control socket, from inside the host: the daemon tells
   * who is asking through its own network namespace's socket table.
   */
  ctl<T = unknown>(host: LabHost, control: string, args: string[]): T {
    return JSON.parse(this.exec(host, process.execPath, [path.join(REPO, 'bin', 'lockdropctl'), ...args, '--json', '--control', control])) as T;
  }

  /** Resolves once the host's lockdropd answers on its control socket (a loaded 2-core machine can take 15 s to start two). */
  async waitForControl(host: LabHost, control: string, timeoutMs = 30_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      try {
        this.ctl(host, control, ['status']);
        return;
      } catch (err) {
        const d = this.daemons.get(control);
        const gone = d && (d.child.exitCode !== null || d.child.signalCode !== null);
        if (gone || Date.now() > until) {
          const why = gone ? `it exited (${d.child.exitCode ?? d.child.signalCode})` : `no answer in ${timeoutMs} ms`;
          throw new Error(`lockdropd on ${host.name} did not come up: ${why}: ${(err as { stderr?: string }).stderr ?? String(err)}${d?.stderr.length ? `; its stderr: ${d.stderr.join(' | ')}` : ''}`);
        }
      }
      await sleep(200);
    }
  }

  /** Starts a demo client host process (src/demo/client-host.ts) and waits until it is ready. */
  async startClient(host: LabHost, onLine?: (j: Json) => void, onStderr?: (line: string) => void): Promise<JsonLines> {
    const child = this.spawn(host, process.execPath, [path.join(REPO, 'dist', 'demo', 'client-host.js'), host.name, host.address]);
    if (onStderr) createInterface({ input: child.stderr! }).on('line', onStderr);
    const c = new JsonLines(child, onLine);
    await c.wait(`${host.name} ready`, (j) => j.event === 'ready', 15_000);
    return c;
  }

  /** Kills every process it started (and anything else left in its namespaces) and removes the namespaces. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    await sleep(200);
    const killed: string[] = [];
    for (const ns of this.namespaces) {
      if (!existsSync(`/run/netns/${ns}`)) continue;
      const pids = run('ip', ['netns', 'pids', ns]).split(/\s+/).filter(Boolean);
      for (const pid of pids) tryRun('kill', ['-KILL', pid]);
      killed.push(...pids);
    }
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    // Gone means gone: wait (bounded) until the kernel has really removed them.
    for (let i = 0; i < 40 && killed.some((pid) => existsSync(`/proc/${pid}/ns`)); i++) await sleep(50);
    for (const ns of [...this.namespaces].reverse()) tryRun('ip', ['netns', 'del', ns]);
  }

  /** Namespaces of this lab still present (for the no-leftovers check). */
  leftovers(): string[] {
    return this.namespaces.filter((ns) => existsSync(`/run/netns/${ns}`));
  }

  private addNetns(name: string): void {
    run('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
  }
}

/** A process on a lab host whose stdout is JSON lines, with a way to wait for one. */
export class JsonLines {
  private readonly seen: Json[] = [];
  private readonly waiters = new Set<{ match: (j: Json) => boolean; resolve: (j: Json) => void }>();

  constructor(readonly child: ChildProcess, onLine: (j: Json) => void = () => undefined) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let j: Json;
      try { j = JSON.parse(line) as Json; } catch { return; }
      this.seen.push(j);
      onLine(j);
      for (const w of this.waiters) if (w.match(j)) { this.waiters.delete(w); w.resolve(j); }
    });
  }

  /** The first line (already seen after `since`, or still to come) that matches. */
  wait(what: string, match: (j: Json) => boolean, timeoutMs = 30_000, since = 0): Promise<Json> {
    const old = this.seen.slice(since).find(match);
    if (old) return Promise.resolve(old);
    return new Promise((resolve, reject) => {
      const w = { match, resolve: (j: Json) => { clearTimeout(timer); resolve(j); } };
      const timer = setTimeout(() => { this.waiters.delete(w); reject(new Error(`timed out waiting for ${what}`)); }, timeoutMs);
      this.waiters.add(w);
    });
  }

  get count(): number { return this.seen.length; }

  send(cmd: Json): void { this.child.stdin!.write(`${JSON.stringify(cmd)}\n`); }

  /** Sends a command to a client host (client-host.ts) and waits for its next `event` line. */
  ask(cmd: Json, event: string, timeoutMs = 20_000): Promise<Json> {
    const mark = this.count;
    this.send(cmd);
    return this.wait(`${event} after ${String(cmd.do)}`, (j) => j.event === event, timeoutMs, mark);
  }
}

/** A client host takes `count` locks through `server`: the tally of their statuses. */
export async function lockMany(c: JsonLines, server: string, count: number): Promise<Record<string, number>> {
  return (await c.ask({ do: 'lock', server, count }, 'locked')).statuses as Record<string, number>;
}

/** A client host tries one new lock through `server` at `offset`: its status. */
export async function tryLock(c: JsonLines, server: string, offset: number): Promise<string> {
  return (await c.ask({ do: 'try', server, offset }, 'tried')).status as string;
}
