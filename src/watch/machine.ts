// The per-address state machine: takes source observations and timer expiries, returns
// decisions (events to emit, timers to start or cancel). No I/O, no clock of its own.
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

export type Decision =
  | { kind: 'emit'; event: Omit<AddressEvent, 'detectedAt'> }
  | { kind: 'start-timer'; token: number; delayMs: number }
  | { kind: 'cancel-timer'; token: number };

export type MachineInput = { kind: 'change'; change: AddressChange } | { kind: 'timer'; token: number };

interface Attribution {
  at: number;
  source: SourceName;
  ifindex: number;
  pid?: number;
  comm?: string;
}

interface AddressState {
  family: AddressFamily;
  /** source → ifindex → flags: where each source sees the address. */
  views: Map<SourceName, Map<number, AddressFlags>>;
  /** Time and source of the observation behind the last transition. */
  lastAt: number;
  lastSource?: SourceName;
  announced: 'up' | 'down';
  ifindex: number;
  draining?: Attribution & { token: number };
  /** A removal waiting out the hold-down. */
  pendingDown?: Attribution & { token: number };
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
  /** The options are read at each use: a getter there makes them reloadable. */
  constructor(private readonly opts: MachineOptions = {}) {}

  private get holdDownMs(): number {
    return this.opts.holdDownMs ?? 0;
  }

  private get drainTimeoutMs(): number {
    return this.opts.drainTimeoutMs ?? 1000;
  }

  /** What downstream was told about an address (draining counts as up). */
  announced(address: string): 'up' | 'down' {
    return this.addresses.get(address)?.announced ?? 'down';
  }

  handle(input: MachineInput): Decision[] {
    if (input.kind === 'timer') return this.expire(input.token);
    const c = input.change;
    let s = this.addresses.get(c.address);
    if (!s) {
      s = { family: c.family, views: new Map(), lastAt: -Infinity, announced: 'down', ifindex: c.ifindex };
      this.addresses.set(c.address, s);
    }
    switch (c.kind) {
      case 'remove-intent': return this.intent(c, s);
      case 'intent-failed': return s.draining ? this.endDrain(c.address, s, c) : [];
      default: return this.observe(c, s);
    }
  }

  private observe(c: AddressChange, s: AddressState): Decision[] {
    let view = s.views.get(c.source);
    if (!view) s.views.set(c.source, (view = new Map()));
    if (c.kind === 'added') view.set(c.ifindex, c.flags ?? {});
    else view.delete(c.ifindex);
    const target = [...view.values()].some(usable);
    const isUp = s.announced === 'up' && !s.pendingDown;
    if (target === isUp) {
      // The same change seen again: enrich a removal still in hold-down.
      if (!target && s.pendingDown) {
        const p = s.pendingDown;
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
    s.ifindex = c.ifindex;
    return target ? this.arrive(c, s) : this.depart(c, s);
  }

  private arrive(c: AddressChange, s: AddressState): Decision[] {
    if (s.pendingDown) {
      // Back within the hold-down: nothing happened as far as downstream knows.
      const out: Decision[] = [this.cancel(s.pendingDown.token)];
      s.pendingDown = undefined;
      if (s.draining) out.push(...this.endDrain(c.address, s, c));
      return out;
    }
    s.announced = 'up';
    return [{ kind: 'emit', event: { type: 'up', address: c.address, family: s.family, ...attribution(c) } }];
  }

  private depart(c: AddressChange, s: AddressState): Decision[] {
    const who = attribution(c);
    if (who.pid === undefined && s.draining?.pid !== undefined) {
      who.pid = s.draining.pid;
      if (s.draining.comm !== undefined) who.comm = s.draining.comm;
    }
    const out: Decision[] = [];
    if (s.draining) out.push(this.cancel(s.draining.token)); // confirmed: no drain timeout any more
    if (this.holdDownMs > 0) {
      const token = this.startTimer(c.address);
      s.pendingDown = { ...who, token };
      out.push({ kind: 'start-timer', token, delayMs: this.holdDownMs });
      return out;
    }
    return [...out, ...this.down(c.address, s, who)];
  }

  private down(address: string, s: AddressState, who: Attribution): Decision[] {
    s.announced = 'down';
    s.draining = undefined;
    s.pendingDown = undefined;
    const { at, source, ifindex, pid, comm } = who; // not the timer token
    return [{
      kind: 'emit',
      event: { type: 'down', address, family: s.family, at, source, ifindex, ...(pid !== undefined && { pid }), ...(comm !== undefined && { comm }) },
    }];
  }

  private intent(c: AddressChange, s: AddressState): Decision[] {
    // Nothing to drain unless the address is up (a failing `ip addr del` of an absent address).
    if (s.announced !== 'up' || s.pendingDown || s.draining) return [];
    const token = this.startTimer(c.address);
    s.draining = { ...attribution(c), token };
    return [
      { kind: 'emit', event: { type: 'draining', address: c.address, family: s.family, ...attribution(c) } },
      { kind: 'start-timer', token, delayMs: this.drainTimeoutMs },
    ];
  }

  private endDrain(address: string, s: AddressState, cause: { at: number; source: SourceName; ifindex: number; pid?: number; comm?: string }): Decision[] {
    const d = s.draining!;
    s.draining = undefined;
    return [
      this.cancel(d.token),
      {
        kind: 'emit',
        event: {
          type: 'drain-ended', address, family: s.family, ifindex: d.ifindex, source: cause.source, at: cause.at,
          ...(d.pid !== undefined && { pid: d.pid }), ...(d.comm !== undefined && { comm: d.comm }),
        },
      },
    ];
  }

  private expire(token: number): Decision[] {
    const address = this.timers.get(token);
    this.timers.delete(token);
    const s = address === undefined ? undefined : this.addresses.get(address);
    if (!s || address === undefined) return [];
    if (s.pendingDown?.token === token) return this.down(address, s, s.pendingDown);
    if (s.draining?.token === token) {
      const d = s.draining;
      return this.endDrain(address, s, { ...d, at: d.at + this.drainTimeoutMs });
    }
    return [];
  }

  private startTimer(address: string): number {
    const token = this.nextToken++;
    this.timers.set(token, address);
    return token;
  }

  private cancel(token: number): Decision {
    this.timers.delete(token);
    return { kind: 'cancel-timer', token };
  }
}
