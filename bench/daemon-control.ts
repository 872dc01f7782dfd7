// Control socket round trips against a real lockdropd (run as root, inside a throw-away network
// namespace: `unshare --net --mount -- sh -c 'mount -t tmpfs x /run; ip link set lo up; npx tsx bench/daemon-control.ts'`).
// Each request is a new connection, so each pays the peer-uid check: the figure an operator's
// script sees per lockdropctl call, minus node's own start-up. Both checks in one run, for a fair
// comparison on a loaded machine: SO_PEERCRED (the addon), then the fallback without it (ss + /proc).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from '../src/cli/client';
import { NlmClient } from '../src/nlm';

const pct = (xs: number[], p: number): number => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

async function bench(check: string, env: NodeJS.ProcessEnv): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'lockdrop-bench-'));
  const control = path.join(dir, 'run', 'control.sock');
  const d = spawn(process.execPath, [path.join(__dirname, '..', 'bin', 'lockdropd'), '--state-dir', path.join(dir, 'state'), '--control', control, '--rpcbind', 'off', '--sources', 'poll', '--log-level', 'error'], { stdio: 'inherit', env: { ...process.env, ...env } });
  try {
    for (let i = 0; ; i++) {
      try {
        await request(control, { cmd: 'status' });
        break;
      } catch (err) {
        if (i > 100) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const s = await request<{ nlmPort: number }>(control, { cmd: 'status' });
    const c = await NlmClient.create({ server: { address: '127.0.0.1', port: s.nlmPort }, transport: 'tcp', vers: 4, callerName: 'bench' });
    const N = 2000;
    for (let i = 0; i < N; i++) await c.lock({ fh: Buffer.from(`0100010101000000${i.toString(16).padStart(8, '0')}`, 'hex'), svid: 1, exclusive: true });
    await c.close();
    for (const [name, req] of [['status', { cmd: 'status' }], [`locks (${N} locks)`, { cmd: 'locks' }]] as const) {
      const times: number[] = [];
      for (let i = 0; i < 200; i++) {
        const t = performance.now();
        await request(control, req);
        times.push(performance.now() - t);
      }
      times.sort((a, b) => a - b);
      console.log(`${check}: ${name}: p50 ${pct(times, 50).toFixed(2)} ms, p99 ${pct(times, 99).toFixed(2)} ms per request (new connection each, peer check included)`);
    }
  } finally {
    d.kill('SIGTERM');
    await new Promise((r) => d.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  await bench('SO_PEERCRED', {});
  await bench('ss + /proc (LOCKDROP_NO_ADDON=1)', { LOCKDROP_NO_ADDON: '1' });
}

void main();
