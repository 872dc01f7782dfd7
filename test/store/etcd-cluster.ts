// A real etcd cluster for tests: three members of Debian's etcd-server, on loopback ports (inside
// the test's private network namespace under scripts/mocha-ns.sh) or on given addresses, each in a
// data directory of its own, all removed by stop(). Short election timeouts so a killed leader
// is replaced within a second.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { hasCommand } from '../support/netns';

export const hasEtcd = (): boolean => hasCommand('etcd') && hasCommand('etcdctl');

export interface Member {
  name: string;
  host: string;
  clientPort: number;
  peerPort: number;
  /** Runs the member's command inside this prefix (e.g. `ip netns exec NS`). */
  wrap: string[];
  proc: ChildProcess | undefined;
  dir: string;
}

export interface EtcdClusterOptions {
  /** One address per member (default three times 127.0.0.1 on distinct ports). */
  hosts?: string[];
  /** Per member, a command prefix to run it in (a network namespace). */
  wraps?: string[][];
  basePort?: number;
}

export class EtcdCluster {
  readonly members: Member[];
  private readonly root: string;

  private constructor(opts: EtcdClusterOptions) {
    this.root = fs.mkdtempSync(path.join(tmpdir(), 'lockdrop-etcd-'));
    const hosts = opts.hosts ?? ['127.0.0.1', '127.0.0.1', '127.0.0.1'];
    const base = opts.basePort ?? 23_790 + Math.floor(Math.random() * 1_000) * 6;
    this.members = hosts.map((host, i) => ({ name: `m${i}`, host, clientPort: base + 2 * i, peerPort: base + 2 * i + 1, wrap: opts.wraps?.[i] ?? [], proc: undefined, dir: path.join(this.root, `m${i}`) }));
  }

  static async start(opts: EtcdClusterOptions = {}): Promise<EtcdCluster> {
    const c = new EtcdCluster(opts);
    try {
      for (const m of c.members) c.run(m, 'new');
      await c.waitHealthy(15_000);
    } catch (err) {
      await c.stop();
      throw err;
    }
    return c;
  }

  get endpoints(): string[] {
    return this.members.map((m) => `http://${m.host}:${m.clientPort}`);
  }

  private run(m: Member, state: 'new' | 'existing'): void {
    const initial = this.members.map((x) => `${x.name}=http://${x.host}:${x.peerPort}`).join(',');
    const args = [
      '--name', m.name, '--data-dir', m.dir,
      '--listen-client-urls', `http://${m.host}:${m.clientPort}`, '--advertise-client-urls', `http://${m.host}:${m.clientPort}`,
      '--listen-peer-urls', `http://${m.host}:${m.peerPort}`, '--initial-advertise-peer-urls', `http://${m.host}:${m.peerPort}`,
      '--initial-cluster', initial, '--initial-cluster-state', state, '--initial-cluster-token', path.basename(this.root),
      '--heartbeat-interval', '50', '--election-timeout', '500', '--log-level', 'error', '--logger', 'zap',
    ];
    const [cmd, ...pre] = [...m.wrap, 'etcd'];
    m.proc = spawn(cmd!, [...pre, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    m.proc.stderr!.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-4_000);
    });
    m.proc.on('exit', () => {
      if (m.proc?.exitCode && m.proc.exitCode !== 0) process.stderr.write(`etcd ${m.name} exited ${m.proc.exitCode}: ${err}\n`);
    });
  }

  /** etcdctl against the cluster (or one member); stdout. */
  ctl(args: string[], member?: Member): string {
    const eps = member ? `http://${member.host}:${member.clientPort}` : this.endpoints.join(',');
    // From where the members are reachable: a running member's namespace.
    const [cmd, ...pre] = [...((member ?? this.members.find((m) => m.proc))?.wrap ?? []), 'etcdctl'];
    const r = spawnSync(cmd!, [...pre, `--endpoints=${eps}`, '--command-timeout=2s', ...args], { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } });
    if (r.status !== 0) throw new Error(`etcdctl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  }

  async waitHealthy(ms: number): Promise<void> {
    const t0 = Date.now();
    for (;;) {
      try {
        this.ctl(['endpoint', 'health']);
        return;
      } catch (err) {
        if (Date.now() - t0 > ms) throw new Error(`etcd cluster not healthy after ${ms} ms: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** The member that leads now. */
  leader(): Member {
    const out = JSON.parse(this.ctl(['endpoint', 'status', '-w', 'json'])) as Array<{ Endpoint: string; Status: { header: { member_id: number }; leader: number } }>;
    const s = out.find((x) => String(x.Status.header.member_id) === String(x.Status.leader));
    const m = this.members.find((x) => s && s.Endpoint.endsWith(`:${x.clientPort}`));
    if (!m) throw new Error('no leader');
    return m;
  }

  kill(m: Member, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = m.proc;
    m.proc = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      p.once('exit', () => resolve());
      p.kill(signal);
    });
  }

  /** Starts a killed member again on its data directory. */
  restart(m: Member): void {
    this.run(m, 'existing');
  }

  async stop(): Promise<void> {
    for (const m of this.members) await this.kill(m);
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}
