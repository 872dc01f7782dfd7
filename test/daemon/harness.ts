// Runs the real compiled lockdropd (bin/lockdropd → dist/) for daemon, cli and metrics tests.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { requireNamespaceRoot } from '../support/netns';

export const REPO = path.resolve(__dirname, '..', '..');
export const LOCKDROPD = path.join(REPO, 'bin', 'lockdropd');
export const LOCKDROPCTL = path.join(REPO, 'bin', 'lockdropctl');

/**
 * Builds dist/ when any file under src/ is newer than it (scripts/test.sh builds first). Type
 * errors elsewhere in the tree still emit JavaScript, so a failing build is not fatal here.
 */
/**
 * For a suite of real daemons that needs root: skipped without it, the build made first, and the
 * cleanups its tests push run after it, last first.
 */
export function daemonSuite(): (() => unknown)[] {
  const cleanups: (() => unknown)[] = [];
  before(function () {
    requireNamespaceRoot(this);
    ensureBuilt();
  });
  after(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  return cleanups;
}

export function ensureBuilt(): void {
  const stamp = path.join(REPO, 'dist', 'cli', 'lockdropd.js');
  const stale = !existsSync(stamp) || execFileSync('find', [path.join(REPO, 'src'), '-name', '*.ts', '-newer', stamp, '-print', '-quit'], { encoding: 'utf8' }).trim() !== '';
  if (!stale) return;
  try {
    execFileSync('npm', ['run', '--silent', 'build'], { cwd: REPO, stdio: 'ignore' });
  } catch {
    if (!existsSync(stamp)) throw new Error('npm run build produced no dist/cli/lockdropd.js');
  }
}

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

export class DaemonProcess {
  readonly logs: LogLine[] = [];
  stderr = '';
  readonly exited: Promise<number>;
  private readonly waiters = new Set<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }>();

  constructor(readonly child: ChildProcess, readonly dir: string, readonly control: string) {
    let buf = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const l = JSON.parse(line) as LogLine;
          this.logs.push(l);
          for (const w of this.waiters) if (w.match(l)) {
            this.waiters.delete(w);
            w.resolve(l);
          }
        } catch {
          /* not a log line */
        }
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (this.stderr += c));
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : -1))));
  }

  /** Resolves with the first log line (past or future) matching. */
  waitLog(match: (l: LogLine) => boolean, timeoutMs = 10_000): Promise<LogLine> {
    const seen = this.logs.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const w = { match, resolve: (l: LogLine) => (clearTimeout(timer), resolve(l)) };
      const timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(new Error(`no log line matched within ${timeoutMs} ms; stderr: ${this.stderr}; last logs: ${this.logs.slice(-5).map((l) => l.msg).join(' | ')}`));
      }, timeoutMs);
      this.waiters.add(w);
    });
  }

  started(): Promise<LogLine> {
    return Promise.race([
      this.waitLog((l) => / started: /.test(l.msg), 15_000),
      this.exited.then((code) => {
        throw new Error(`lockdropd exited with ${code}: ${this.stderr}`);
      }),
    ]);
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }

  /** Runs lockdropctl against this daemon; returns its exit code and output. */
  ctl(args: string[], opts: { asUser?: number } = {}): { code: number; stdout: string; stderr: string } {
    return runCtl([...args, '--control', this.control], opts);
  }

  cleanup(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function runCtl(args: string[], opts: { asUser?: number } = {}): { code: number; stdout: string; stderr: string } {
  const [cmd, argv] = opts.asUser === undefined
    ? [process.execPath, [LOCKDROPCTL, ...args]]
    : ['setpriv', [`--reuid=${opts.asUser}`, `--regid=${opts.asUser}`, '--clear-groups', process.execPath, LOCKDROPCTL, ...args]];
  try {
    const stdout = execFileSync(cmd, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 });
    return { code: 0, stdout, stderr: '' };
  } catch (err) {
    const e = err as { status: number | null; stdout?: string; stderr?: string };
    return { code: e.status ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** A fresh directory for one daemon: state, control socket (in a 0700 folder), config. */
export function daemonDir(): string {
  return mkdtempSync(path.join(tmpdir(), 'lockdropd-test-'));
}

/** Starts lockdropd with the flags given (plus per-test state dir and control socket unless given). */
export function spawnDaemon(args: string[] = [], opts: {
  dir?: string;
  config?: unknown;
  env?: NodeJS.ProcessEnv;
  /** Run inside this network namespace. */
  netns?: string;
  /** Run inside the network and mount namespaces of this process: a node's rpcbind (test/support/ganesha.ts). */
  node?: { anchorPid: number };
} = {}): DaemonProcess {
  const dir = opts.dir ?? daemonDir();
  const control = path.join(dir, 'run', 'control.sock');
  const full = ['--state-dir', path.join(dir, 'state'), '--control', control, '--rpcbind', 'off', '--sources', 'poll', '--poll-interval', '0.2', ...args];
  if (opts.config !== undefined) {
    const file = path.join(dir, 'lockdrop.yaml');
    writeFileSync(file, typeof opts.config === 'string' ? opts.config : JSON.stringify(opts.config));
    full.unshift('--config', file);
  }
  const [cmd, argv] = opts.node !== undefined
    ? ['nsenter', ['-t', String(opts.node.anchorPid), '-n', '-m', '--', process.execPath, LOCKDROPD, ...full]]
    : opts.netns === undefined ? [process.execPath, [LOCKDROPD, ...full]] : ['ip', ['netns', 'exec', opts.netns, process.execPath, LOCKDROPD, ...full]];
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  return new DaemonProcess(child, dir, control);
}

export const modeOf = (p: string): number => statSync(p).mode & 0o777;

/** A `--json` listing (locks, monitors): one JSON object per line, nothing for none. */
export const listing = <T>(stdout: string): T[] => stdout.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as T);

/** `lockdropctl watch --json` on a daemon: the events it prints, its stderr, its exit. */
export function spawnWatch(control: string): { child: ChildProcess; events: { kind: string; message: string }[]; stderr: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [LOCKDROPCTL, 'watch', '--json', '--control', control], { stdio: ['ignore', 'pipe', 'pipe'] });
  const events: { kind: string; message: string }[] = [];
  let buf = '';
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  child.stdout!.setEncoding('utf8').on('data', (c: string) => {
    buf += c;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      events.push(JSON.parse(buf.slice(0, nl)) as { kind: string; message: string });
      buf = buf.slice(nl + 1);
    }
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, events, stderr: () => stderr, exited };
}
