// The daemon's words: the views the control socket answers with and the lines of its log and of
// `lockdropctl watch`. Pure functions; each line is built once and logged and watched as is.
import type { AddressEvent } from '../watch/types';
import { plural, type FailoverReport } from '../failover';
import type { DropCounts, HeldLock, LockChange } from '../locks';
import type { LockView, WatchEvent } from '../control';

export const iso = (ms: number | null | undefined): string | null => (ms === null || ms === undefined ? null : new Date(ms).toISOString());

export function sum(all: DropCounts[]): DropCounts {
  return all.reduce((a, c) => ({ locks: a.locks + c.locks, shares: a.shares + c.shares, blocked: a.blocked + c.blocked, clients: a.clients + c.clients, woken: a.woken + c.woken }), { locks: 0, shares: 0, blocked: 0, clients: 0, woken: 0 });
}

/** Why a server could not bind its port on `address` at start. */
export function portError(what: string, port: number, address: string, err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'EADDRINUSE') return `${what} port ${port} is already in use on ${address} (another lock manager running? choose another port)`;
  if (e.code === 'EACCES') return `${what} port ${port} needs privileges to bind`;
  return `${what} port ${port}: ${e.message}`;
}

export function lockView(l: HeldLock): LockView {
  const at = l.owner.host.lastIndexOf('@');
  return {
    server: l.serverAddress,
    client: l.owner.host,
    callerName: l.owner.host.slice(0, at),
    clientAddress: l.owner.host.slice(at + 1),
    svid: l.owner.svid,
    oh: l.owner.oh.toString('hex'),
    offset: l.offset.toString(),
    length: l.length.toString(),
    exclusive: l.exclusive,
    fh: l.fh.toString('hex'),
    export: l.exportId ?? null,
    since: new Date(l.since).toISOString(),
    awaitingReclaim: l.awaitingReclaim === true,
  };
}

/** The operator's drop (an address, a client or an export), as the address drop's line (failover's dropLine) says it. */
export function operatorDropLine(target: string, counts: DropCounts, ms: number): string {
  return `${target}: dropped ${plural(counts.locks, 'lock')} of ${plural(counts.clients, 'client')} (operator) in ${ms.toFixed(1)} ms`;
}

/** A monitored host rebooted (SM_NOTIFY in): its locks and shares went on every address. */
export function rebootLine(host: string, state: number, counts: DropCounts): string {
  return `${host} rebooted (state ${state}): released ${plural(counts.locks, 'lock')}, ${plural(counts.shares, 'share')}`;
}

/** A source lost events (netlink ENOBUFS, a full ring buffer): it reads the addresses again. */
export function overflowLine(o: { source: string; reason?: string }): string {
  return `${o.source}: events lost (${o.reason ?? 'overflow'}), resynchronising`;
}

export function describeEvent(e: AddressEvent): string {
  const by = e.comm ? ` by ${e.comm}[${e.pid}]` : '';
  const what = { up: 'arrived', down: 'removed', draining: 'removal requested', 'drain-ended': 'removal did not happen' }[e.type];
  return `${e.address} ${what}${by} (${e.source}, seen in ${(e.detectedAt - e.at).toFixed(1)} ms)`;
}

/** A failover report as `watch` shows it; draining and drain-ended are shown from the address event itself. */
export function describeReport(r: FailoverReport): Omit<WatchEvent, 'at'> | undefined {
  switch (r.type) {
    case 'down':
      return { kind: 'drop', address: r.address, message: r.line, trigger: r.source, ...r.counts, ms: r.ms };
    case 'notified':
      return { kind: 'notify', address: r.address, message: `${r.address}: SM_NOTIFY (state ${r.state}) answered by ${plural(r.notified, 'host')}${r.failed.length ? `, not by ${r.failed.join(', ')}` : ''} in ${r.ms.toFixed(0)} ms`, state: r.state, notified: r.notified, failed: r.failed };
    case 'up':
      return { kind: 'address', address: r.address, message: `${r.address} ready: state ${r.state}, ${plural(r.monitors, 'host')} to notify, grace ${r.graceEndsAt ? `until ${iso(r.graceEndsAt)}` : 'not needed'}`, state: r.state };
    case 'error':
      return { kind: 'address', address: r.address, message: r.step === 'lost-lock' ? r.error : `${r.step} failed for ${r.address}: ${r.error}` };
    case 'grace-ended':
      return { kind: 'grace', address: r.address, message: r.line };
    case 'barrier':
      return r.missing.length ? { kind: 'drop', address: r.address, message: `${r.address}: ${r.missing.join(', ')} did not confirm its journal in ${r.ms.toFixed(0)} ms` } : undefined;
    default:
      return undefined;
  }
}

export function describeChange(c: Exclude<LockChange, { type: 'dropped' }>): WatchEvent {
  const at = new Date().toISOString();
  if (c.type === 'grace') {
    const scope = c.period.scope.kind === 'address' ? c.period.scope.address : c.period.scope.kind === 'export' ? `export ${c.period.scope.exportId}` : 'every address';
    return { at, kind: 'grace', address: c.period.scope.kind === 'address' ? c.period.scope.address : undefined, message: `grace ${c.state} for ${scope}${c.state === 'started' ? ` until ${iso(c.period.endsAt)}` : ''}` };
  }
  if (c.type === 'blocked') {
    const r = c.request;
    return { at, kind: 'blocked', address: r.serverAddress, message: `${r.owner.host} svid ${r.owner.svid} waits for ${r.exclusive ? 'write' : 'read'} ${r.offset}+${r.length} via ${r.serverAddress}` };
  }
  if (c.type === 'kept') {
    const r = c.request;
    return { at, kind: 'blocked', address: r.serverAddress, message: `refused ${r.owner.host}'s ${r.exclusive ? 'write' : 'read'} lock ${r.offset}+${r.length} on fh ${r.fh.toString('hex')} via ${r.serverAddress}: held by ${c.holder.host} through ${c.holder.address}, awaiting reclaim` };
  }
  const l = c.lock;
  const kind = c.type === 'granted' ? 'grant' : 'release';
  return { at, kind, address: l.serverAddress, message: `${c.type === 'granted' ? (c.viaBlock ? 'granted (was blocked)' : 'granted') : 'released'} ${l.exclusive ? 'write' : 'read'} ${l.offset}+${l.length} to ${l.owner.host} svid ${l.owner.svid} via ${l.serverAddress}${l.exportId ? ` on ${l.exportId}` : ''}` };
}
