// What every demo scene needs: a lab it builds and always removes (also on Ctrl-C), a clock for
// its narration, moving a floating address the way a cluster agent does, and the lines of the
// daemons and clients worth telling.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { StatusReport } from '../control';
import { Lab, type LabHost } from './lab';

export type Json = Record<string, any>;

export const IPADDR2 = '/usr/lib/ocf/resource.d/heartbeat/IPaddr2';

export interface SceneOptions {
  /** Where the narration goes (default: stdout). */
  print?: (line: string) => void;
  /** Namespace name prefix, to keep concurrent labs apart. */
  prefix?: string;
  /** Use `ip addr del/add` even when resource-agents' IPaddr2 is installed. */
  plainIp?: boolean;
}

export interface Scene {
  lab: Lab;
  /** A line of narration, stamped with the seconds since the scene began. */
  say: (s: string) => void;
  print: (line: string) => void;
  /** A fresh directory for the scene's state, removed at the end. */
  work: string;
  /** Addresses move with resource-agents' IPaddr2 (else ip addr). */
  useIpaddr2: boolean;
}

/** Plays a scene in a fresh lab, then removes everything it made and reports what was left. */
export async function runScene<R extends object>(o: SceneOptions, play: (scene: Scene) => Promise<R>): Promise<R & { leftovers: string[] }> {
  const print = o.print ?? ((l: string) => void process.stdout.write(`${l}\n`));
  const t0 = Date.now();
  const say = (s: string): void => print(`[${((Date.now() - t0) / 1000).toFixed(2).padStart(6)}s] ${s}`);
  if (process.getuid?.() !== 0) throw new Error('the demo builds network namespaces: run it as root');
  for (const bin of ['ip', 'nsenter', 'unshare', 'rpcbind', 'rpcinfo']) if (!commandExists(bin)) throw new Error(`the demo needs ${bin} (npm run demo installs it)`);
  const lab = new Lab(o.prefix ?? `ldd${process.pid % 1000}`);
  const work = mkdtempSync(path.join(tmpdir(), 'lockdrop-demo-'));
  const interrupted = (): void => { say('interrupted: cleaning up'); void lab.dispose().then(() => process.exit(130)); };
  process.once('SIGINT', interrupted).once('SIGTERM', interrupted);
  try {
    const result = await play({ lab, say, print, work, useIpaddr2: !o.plainIp && existsSync(IPADDR2) });
    say('cleaning up: stopping every process and removing every namespace');
    await lab.dispose();
    const leftovers = lab.leftovers();
    say(leftovers.length ? `left behind: ${leftovers.join(', ')}` : 'done: nothing left behind');
    return { ...result, leftovers };
  } finally {
    process.off('SIGINT', interrupted).off('SIGTERM', interrupted);
    await lab.dispose();
    rmSync(work, { recursive: true, force: true });
  }
}

/** Adds (start) or removes (stop) a floating address on a host, with IPaddr2 or ip addr. */
export function moveAddress(scene: Scene, host: LabHost, address: string, op: 'start' | 'stop'): void {
  if (scene.useIpaddr2) {
    scene.lab.exec(host, IPADDR2, [op], { ...process.env, OCF_ROOT: '/usr/lib/ocf', OCF_RESKEY_ip: address, OCF_RESKEY_cidr_netmask: '24', OCF_RESKEY_nic: host.nic });
  } else {
    scene.lab.exec(host, 'ip', ['addr', op === 'start' ? 'add' : 'del', `${address}/24`, 'dev', host.nic]);
  }
}

export const removeCommand = (scene: Scene): string => (scene.useIpaddr2 ? 'IPaddr2 stop (resource-agents)' : 'ip addr del');

export function showLocks(say: (s: string) => void, lab: Lab, node: { host: LabHost; control: string }, label = node.host.name): void {
  const s = lab.ctl<StatusReport>(node.host, node.control, ['status']);
  const rows = s.addresses.map((a) => `${a.address} ${a.present ? 'present' : 'absent '} ${String(a.locks).padStart(3)} ${a.locks === 1 ? 'lock ' : 'locks'}${a.journal ? ` (journal ${a.journal})` : ''}${a.grace ? `, grace until ${a.grace.slice(11, 19)}` : ''}`);
  say(`${label} locks per address: ${rows.length ? rows.join(' | ') : '(none)'}`);
}

/** The daemon's log lines worth narrating: address arrivals and removals, drops, notifications, the end of a grace. */
export function narrateDaemon(node: string, j: Json, say: (s: string) => void): void {
  if (typeof j.msg !== 'string' || (j.level ?? 30) < 30) return;
  if ((typeof j.address === 'string' && / (removed|arrived|removal)/.test(j.msg)) || /^(nsm: notify done|grace of )/.test(j.msg)) say(`  ${node}│ ${j.msg}`);
}

/** When a daemon logged a line (its ISO 8601 time), in ms since the epoch. */
export const loggedAt = (j: Json): number => Date.parse(String(j.time));

/** The line a node logs when an address's grace ended by itself (every lock reclaimed or released). */
export const graceEnded = (address: string) => (j: Json): boolean =>
  j.address === address && typeof j.msg === 'string' && j.msg.startsWith(`grace of ${address} ended:`);

export function narrateClient(name: string, j: Json, say: (s: string) => void): void {
  if (j.event === 'locked') say(`  ${name}│ locks through ${j.server}: ${JSON.stringify(j.statuses)} in ${j.ms} ms`);
  if (j.event === 'error') say(`  ${name}│ error: ${j.error}`);
}

function commandExists(bin: string): boolean {
  return (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').some((d) => existsSync(path.join(d, bin)));
}
