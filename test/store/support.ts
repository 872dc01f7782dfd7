// A DirectoryStore in another process (store-child.ts), for tests and benchmarks with real
// separate nodes: commands in, answers and every change out, each change with its time.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';

/** Milliseconds on the system's monotonic clock: one clock for every process (a wall clock stepped during a run would skew a comparison across them). */
export const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6;

export interface ChildChange {
  t: number;
  change: { address: string; reset: boolean; records: Array<[string, string | null]> };
}

export interface ChildOptions {
  pollMs?: number;
  livenessMs?: number;
  watch?: boolean;
}

export class StoreChild {
  readonly proc: ChildProcess;
  readonly changes: ChildChange[] = [];
  readonly faults: unknown[] = [];
  private readonly answers: Array<{ ok?: unknown; error?: string; t?: number; t0?: number }> = [];
  private wake: (() => void) | undefined;
  private exited = false;

  private constructor(stateDir: string, readonly node: string, opts: ChildOptions) {
    this.proc = spawn(process.execPath, ['--require', 'tsx/cjs', path.join(__dirname, 'store-child.ts'), stateDir, node, String(opts.pollMs ?? 100), String(opts.livenessMs ?? 5_000), opts.watch === false ? '0' : '1'], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.proc.on('exit', () => {
      this.exited = true;
      this.wake?.();
    });
    createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      const o = JSON.parse(line) as { change?: unknown; fault?: unknown; ok?: unknown; error?: string };
      if (o.change) this.changes.push(o as ChildChange);
      else if (o.fault) this.faults.push(o.fault);
      else this.answers.push(o);
      this.wake?.();
    });
  }

  static async start(stateDir: string, node: string, opts: ChildOptions = {}): Promise<StoreChild> {
    const c = new StoreChild(stateDir, node, opts);
    await c.answer(20_000);
    return c;
  }

  /** Sends a command and resolves with its answer; rejects with the child's error. */
  async ask<T = unknown>(command: string, ms = 10_000): Promise<{ ok: T; t?: number; t0?: number }> {
    this.proc.stdin!.write(`${command}\n`);
    const a = await this.answer(ms);
    if (a.error !== undefined) throw new Error(`${this.node}: ${command}: ${a.error}`);
    return a as { ok: T; t?: number; t0?: number };
  }

  private async answer(ms: number): Promise<{ ok?: unknown; error?: string; t?: number; t0?: number }> {
    const until = Date.now() + ms;
    while (this.answers.length === 0) {
      if (this.exited) throw new Error(`${this.node}: the store process exited`);
      if (Date.now() > until) throw new Error(`${this.node}: no answer within ${ms} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1, until - Date.now()));
        this.wake = () => (clearTimeout(t), (this.wake = undefined), r());
      });
    }
    return this.answers.shift()!;
  }

  /** The first change (from index `from`) satisfying `pred`, waited for up to `ms`. */
  async change(pred: (c: ChildChange) => boolean, ms = 5_000, from = 0): Promise<ChildChange> {
    const until = Date.now() + ms;
    for (;;) {
      const found = this.changes.slice(from).find(pred);
      if (found) return found;
      if (Date.now() > until) throw new Error(`${this.node}: no such change within ${ms} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1, until - Date.now()));
        this.wake = () => (clearTimeout(t), (this.wake = undefined), r());
      });
    }
  }

  kill(signal: NodeJS.Signals): void {
    this.proc.kill(signal);
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    this.proc.kill('SIGKILL');
    await new Promise<void>((r) => (this.exited ? r() : this.proc.once('exit', () => r())));
  }
}
