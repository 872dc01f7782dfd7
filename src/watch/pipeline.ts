// The pipeline: merge sources ▸ normalise (loopback and unparsable addresses out) ▸ per-address
// state machine (hold-down) ▸ the floating-address filter ▸ AddressEvents. The hold-down and the
// filter come from a configuration stream, so a reload applies without restarting anything.
// Operators only; the one side effect is scheduling timers on the given scheduler (a TestScheduler
// in marble tests).
import {
  Observable, asyncScheduler, filter, isObservable, map, merge, of, pipe,
  type MonoTypeOperatorFunction, type OperatorFunction, type SchedulerLike, type Subscription,
} from 'rxjs';
import { AddressParseError, familyOf, isLinkLocal, isLoopback, networkSet, normaliseAddress } from '../net';
import { AddressStateMachine, type MachineInput, type MachineOptions } from './machine';
import { TRANSITIONS, isOverflow, nowMs, type AddressChange, type AddressEvent, type SourceItem } from './types';

/** What the pipeline takes from the configuration. */
export interface WatchConfig extends MachineOptions {
  /** Floating addresses and/or CIDRs; none: every address but loopback and IPv6 link-local. */
  floating?: readonly string[];
}

/** A configuration, or a stream of them: each value applies from its arrival on. */
export type WatchConfigInput = WatchConfig | Observable<WatchConfig>;

export interface PipelineClock {
  /** Where hold-down and drain timers run (default asyncScheduler). */
  scheduler?: SchedulerLike;
  /** The clock for detectedAt and for the events a filter change makes (default the watch clock, nowMs). */
  now?: () => number;
}

const stream = (config: WatchConfigInput): Observable<WatchConfig> => (isObservable(config) ? config : of(config));

/**
 * The floating-address filter: the listed addresses and networks, or (none listed) every address
 * but loopback and IPv6 link-local (never a floating service address, and not bindable without a
 * scope id).
 */
export function floatingFilter(floating?: readonly string[]): (address: string) => boolean {
  return floating?.length ? networkSet(floating) : (a) => !isLoopback(a) && !isLinkLocal(a);
}

/** Drops overflow markers, unparsable and loopback addresses; normalises the text. */
function localChanges(): OperatorFunction<SourceItem, AddressChange> {
  // Text as a source wrote it → canonical text, or null when dropped. The same few addresses
  // come back again and again; bounded so a flood of distinct ones cannot grow it without end.
  const memo = new Map<string, string | null>();
  const canonical = (text: string): string | null => {
    let out = memo.get(text);
    if (out !== undefined) return out;
    try {
      const address = normaliseAddress(text);
      out = isLoopback(address) ? null : address;
    } catch (err) {
      if (!(err instanceof AddressParseError)) throw err;
      out = null;
    }
    if (memo.size >= 4096) memo.clear();
    memo.set(text, out);
    return out;
  };
  return pipe(
    filter((i): i is AddressChange => !isOverflow(i)),
    map((c) => {
      const address = canonical(c.address);
      if (address === null) return undefined;
      return address === c.address ? c : { ...c, address, family: familyOf(address) };
    }),
    filter((c): c is AddressChange => c !== undefined),
  );
}

/** The state machine as an operator: real transitions only. Completes once its timers are done. */
function transitions(config$: Observable<MachineOptions>, clock: PipelineClock): OperatorFunction<AddressChange, AddressEvent> {
  const scheduler = clock.scheduler ?? asyncScheduler;
  const now = clock.now ?? nowMs;
  return (changes) => new Observable<AddressEvent>((subscriber) => {
    const machine = new AddressStateMachine();
    const timers = new Map<number, Subscription>();
    let upstreamDone = false;
    const apply = (input: MachineInput): void => {
      for (const d of machine.handle(input)) {
        if (d.kind === 'emit') subscriber.next({ ...d.event, detectedAt: now() });
        else if (d.kind === 'start-timer') {
          timers.set(d.token, scheduler.schedule(() => {
            timers.delete(d.token);
            apply({ kind: 'timer', token: d.token });
            if (upstreamDone && timers.size === 0) subscriber.complete();
          }, d.delayMs));
        } else {
          timers.get(d.token)?.unsubscribe();
          timers.delete(d.token);
        }
      }
    };
    // Subscribed first: a configuration at hand (a BehaviorSubject, of()) applies to the first change.
    const configured = config$.subscribe({
      next: ({ holdDownMs, drainTimeoutMs }) => apply({ kind: 'configure', options: { holdDownMs, drainTimeoutMs } }),
      error: (err) => subscriber.error(err),
    });
    const upstream = changes.subscribe({
      next: (change) => apply({ kind: 'change', change }),
      error: (err) => subscriber.error(err),
      complete: () => {
        upstreamDone = true;
        if (timers.size === 0) subscriber.complete();
      },
    });
    return () => {
      configured.unsubscribe();
      upstream.unsubscribe();
      for (const t of timers.values()) t.unsubscribe();
    };
  });
}

/** Every address's transitions but loopback's (the node serves the ones that are not floating). */
export function addressTransitions(config: WatchConfigInput = {}, clock: PipelineClock = {}): OperatorFunction<SourceItem, AddressEvent> {
  return pipe(localChanges(), transitions(stream(config), clock));
}

/**
 * Keeps the floating addresses' events. When the filter changes, an address it now takes in that
 * is up arrives ('up', then 'draining' if its removal is under way). One it lets go gets no event:
 * narrowing the list keeps its locks (the node serves it as one of its own from then on, and the
 * daemon takes it out of failover's hands), so no 'down' may reach failover, which would drop them.
 */
export function onlyFloating(config: WatchConfigInput = {}, clock: PipelineClock = {}): MonoTypeOperatorFunction<AddressEvent> {
  const now = clock.now ?? nowMs;
  return (events) => new Observable<AddressEvent>((subscriber) => {
    let keep = floatingFilter();
    /** The last event of every address that is not down, floating or not. */
    const last = new Map<string, AddressEvent>();
    const configured = stream(config).subscribe({
      next: ({ floating }) => {
        const before = keep;
        keep = floatingFilter(floating);
        for (const e of last.values()) {
          if (!keep(e.address) || before(e.address)) continue;
          const at = now();
          subscriber.next({ ...e, type: 'up', at, detectedAt: at });
          if (e.type === 'draining') subscriber.next({ ...e, detectedAt: at });
        }
      },
      error: (err) => subscriber.error(err),
    });
    const upstream = events.subscribe({
      next: (e) => {
        if (TRANSITIONS[e.type].to === 'down') last.delete(e.address);
        else last.set(e.address, e);
        if (keep(e.address)) subscriber.next(e);
      },
      error: (err) => subscriber.error(err),
      complete: () => subscriber.complete(),
    });
    return () => {
      configured.unsubscribe();
      upstream.unsubscribe();
    };
  });
}

/** The floating addresses' events: addressTransitions ▸ onlyFloating, one configuration for both. */
export function addressEvents(config: WatchConfigInput = {}, clock: PipelineClock = {}): OperatorFunction<SourceItem, AddressEvent> {
  return pipe(addressTransitions(config, clock), onlyFloating(config, clock));
}

/** Merges the sources and runs the pipeline: the AddressEvent stream failover consumes. */
export const watchAddresses = (sources: Array<Observable<SourceItem>>, config: WatchConfigInput = {}, clock: PipelineClock = {}): Observable<AddressEvent> =>
  merge(...sources).pipe(addressEvents(config, clock));
