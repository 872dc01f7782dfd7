// The per-address state machine: takes source observations, timer expiries and configuration,
// returns decisions (events to emit, timers to start or cancel). No I/O, no clock of its own.
//
// Each source keeps its own view of an address (the interfaces it sees it on, with flags). An
// observation moves the address to that source's view unless it is older than the one behind the
// last transition, from another source (a poll snapshot started before netlink reported the
// removal must not bring the address back). So the same change reported by several sources
// yields one transition.
import type { AddressChange, AddressEvent, AddressFamily, AddressFlags, SourceName } from './types';

export interface MachineOptions {
  /** A removal undone within this time is swallowed (0: off). */
  holdDownMs?: number;
  /** Draining without a confirmed removal ends after this time. */
  drainTimeoutMs?: number;
}

export type MachineDecision =
  | { kind: 'emit'; event: Omit<AddressEvent, 'detectedAt'> }
  | { kind: 'start-timer'; token: number; delayMs: number }
  | { kind: 'cancel-timer'; token: number };

export type MachineInput =
  | { kind: 'change'; change: AddressChange }
  | { kind: 'timer'; token: number }
  /** New options: a hold-down applies from the next removal on. */
  | { kind: 'configure'; options: MachineOptions };

interface Attribution {
  at: number;
  source: SourceName;
  ifindex: number;
  pid?: number;
  comm?: string;
}

type Timed = Attribution & { token: number };

/**
 * Where the address is and what leaving that phase needs. Downstream was told 'down' in down, 'up'
 * in up, 'draining' in draining; in leaving (a removal waiting out the hold-down) it was told 'up',
 * or 'draining' when the removal had been requested first (`drained`).
 */
type Lifecycle =
  | { phase: 'down' }
  | { phase: 'up' }
  | { phase: 'draining'; drain: Timed }
  | { phase: 'leaving'; removal: Timed; drained?: Attribution };

interface AddressState {
  family: AddressFamily;
  /** source → ifindex → flags: where each source sees the address. */
  views: Map<SourceName, Map<number, AddressFlags>>;
  /** Time and source of the observation behind the last transition. */
  lastAt: number;
  lastSource?: SourceName;
  life: Lifecycle;
}

const usable = (flags: AddressFlags): boolean => !flags.tentative && !flags.dadfailed;

const attribution = (c: AddressChange): Attribution => ({
  at: c.at,
  source: c.source,
  ifindex: c.ifindex,
  ...(c.pid !== undefined && { pid: c.pid }),
  ...(c.comm !== undefined && { comm: c.comm }),
});

export class AddressStateMachine {
  private readonly addresses = new Map<string, AddressState>();
  /** token → address, for timers in flight. */
  private readonly timers = new Map<number, string>();
  private nextToken = 1;
  private opts: MachineOptions;

  constructor(opts: MachineOptions = {}) {
    this.opts = { ...opts };
  }

  private get holdDownMs(): number {
    return this.opts.holdDownMs ?? 0;
  }

  private get drainTimeoutMs(): number {
    return this.opts.drainTimeoutMs ?? 1000;
  }

  handle(input: MachineInput): MachineDecision[] {
    if (input.kind === 'timer') return this.expire(input.token);
    if (input.kind === 'configure') {
      this.opts = { ...input.options };
      return [];
    }
    const c = input.change;
    let s = this.addresses.get(c.address);
    if (!s) {
      s = { family: c.family, views: new Map(), lastAt: -Infinity, life: { phase: 'down' } };
      this.addresses.set(c.address, s);
    }
    switch (c.kind) {
      case 'remove-intent': return this.intent(c, s);
      case 'intent-failed': return this.intentFailed(c, s);
      default: return this.observe(c, s);
    }
  }

  private observe(c: AddressChange, s: AddressState): MachineDecision[] {
    let view = s.views.get(c.source);
    if (!view) s.views.set(c.source, (view = new Map()));
    if (c.kind === 'added') view.set(c.ifindex, c.flags ?? {});
    else view.delete(c.ifindex);
    const target = [...view.values()].some(usable);
    const isUp = s.life.phase === 'up' || s.life.phase === 'draining';
    if (target === isUp) {
      // The same change seen again: enrich a removal still in hold-down.
      if (!target && s.life.phase === 'leaving') {
        const p = s.life.removal;
        if (c.at < p.at) { p.at = c.at; p.source = c.source; }
        if (p.pid === undefined && c.pid !== undefined) { p.pid = c.pid; p.comm = c.comm; }
      }
      return [];
    }
    // Stale: another source's newer observation already decided. A source's own reports are in
    // order (one socket, sequential snapshots), so they never make each other stale; and only a
    // deciding observation sets the mark, so a source whose clock runs ahead cannot freeze others.
    if (c.at < s.lastAt && c.source !== s.lastSource) return [];
    s.lastAt = c.at;
    s.lastSource = c.source;
    return target ? this.arrive(c, s) : this.depart(c, s);
  }

  private arrive(c: AddressChange, s: AddressState): MachineDecision[] {
    if (s.life.phase === 'leaving') {
      // Back within the hold-down: nothing happened as far as downstream knows.
      const { removal, drained } = s.life;
      s.life = { phase: 'up' };
      const out: MachineDecision[] = [this.cancel(removal.token)];
      if (drained) out.push(this.drainEnded(c.address, s, drained, c));
      return out;
    }
    s.life = { phase: 'up' };
    return [{ kind: 'emit', event: { type: 'up', address: c.address, family: s.family, ...attribution(c) } }];
  }

  private depart(c: AddressChange, s: AddressState): MachineDecision[] {
    const who = attribution(c);
    const drain = s.life.phase === 'draining' ? s.life.drain : undefined;
    if (who.pid === undefined && drain?.pid !== undefined) {
      who.pid = drain.pid;
      if (drain.comm !== undefined) who.comm = drain.comm;
    }
    const out: MachineDecision[] = [];
    if (drain) out.push(this.cancel(drain.token)); // confirmed: no drain timeout any more
    if (this.holdDownMs > 0) {
      const token = this.startTimer(c.address);
      s.life = { phase: 'leaving', removal: { ...who, token }, ...(drain && { drained: drain }) };
      out.push({ kind: 'start-timer', token, delayMs: this.holdDownMs });
      return out;
    }
    return [...out, this.down(c.address, s, who)];
  }

  private down(address: string, s: AddressState, who: Attribution): MachineDecision {
    s.life = { phase: 'down' };
    const { at, source, ifindex, pid, comm } = who; // not the timer token
    return {
      kind: 'emit',
      event: { type: 'down', address, family: s.family, at, source, ifindex, ...(pid !== undefined && { pid }), ...(comm !== undefined && { comm }) },
    };
  }

  private intent(c: AddressChange, s: AddressState): MachineDecision[] {
    // Nothing to drain unless the address is up (a failing `ip addr del` of an absent address).
    if (s.life.phase !== 'up') return [];
    const token = this.startTimer(c.address);
    s.life = { phase: 'draining', drain: { ...attribution(c), token } };
    return [
      { kind: 'emit', event: { type: 'draining', address: c.address, family: s.family, ...attribution(c) } },
      { kind: 'start-timer', token, delayMs: this.drainTimeoutMs },
    ];
  }

  private intentFailed(c: AddressChange, s: AddressState): MachineDecision[] {
    if (s.life.phase === 'draining') {
      const { drain } = s.life;
      s.life = { phase: 'up' };
      return [this.cancel(drain.token), this.drainEnded(c.address, s, drain, c)];
    }
    if (s.life.phase === 'leaving' && s.life.drained) {
      // The request failed, yet the address went: the drain ends, the removal still waits out its hold-down.
      const { drained } = s.life;
      s.life = { phase: 'leaving', removal: s.life.removal };
      return [this.drainEnded(c.address, s, drained, c)];
    }
    return [];
  }

  /** The drain `d` is over (the removal failed, timed out or was undone), because of `cause`. */
  private drainEnded(address: string, s: AddressState, d: Attribution, cause: Attribution): MachineDecision {
    return {
      kind: 'emit',
      event: {
        type: 'drain-ended', address, family: s.family, ifindex: d.ifindex, source: cause.source, at: cause.at,
        ...(d.pid !== undefined && { pid: d.pid }), ...(d.comm !== undefined && { comm: d.comm }),
      },
    };
  }

  private expire(token: number): MachineDecision[] {
    const address = this.timers.get(token);
    this.timers.delete(token);
    const s = address === undefined ? undefined : this.addresses.get(address);
    if (!s || address === undefined) return [];
    if (s.life.phase === 'leaving' && s.life.removal.token === token) return [this.down(address, s, s.life.removal)];
    if (s.life.phase === 'draining' && s.life.drain.token === token) {
      const { drain } = s.life;
      s.life = { phase: 'up' };
      return [this.drainEnded(address, s, drain, { ...drain, at: drain.at + this.drainTimeoutMs })];
    }
    return [];
  }

  private startTimer(address: string): number {
    const token = this.nextToken++;
    this.timers.set(token, address);
    return token;
  }

  private cancel(token: number): MachineDecision {
    this.timers.delete(token);
    return { kind: 'cancel-timer', token };
  }
}
