// The pipeline: merge sources ▸ keep the floating addresses ▸ per-address state machine ▸
// AddressEvents. Operators only; the one side effect is scheduling timers on the given
// scheduler (a TestScheduler in marble tests).
import {
  Observable, asyncScheduler, filter, map, merge, pipe,
  type OperatorFunction, type SchedulerLike, type Subscription,
} from 'rxjs';
import { AddressParseError, familyOf, isLoopback, networkSet, normaliseAddress } from '../net';
import { AddressStateMachine, type MachineInput, type MachineOptions } from './machine';
import { isOverflow, nowMs, type AddressChange, type AddressEvent, type SourceItem } from './types';

export interface PipelineOptions extends MachineOptions {
  /** Floating addresses and/or CIDRs to watch; default every address but loopback. */
  floating?: readonly string[];
  /** Where hold-down and drain timers run (default asyncScheduler). */
  scheduler?: SchedulerLike;
  /** The clock for detectedAt (default performance.timeOrigin + performance.now()). */
  now?: () => number;
}

/** The floating-address filter: the listed addresses and networks, or (none listed) every address but loopback. */
export function addressFilter(floating?: readonly string[]): (address: string) => boolean {
  return floating?.length ? networkSet(floating) : (a) => !isLoopback(a);
}

/** Drops overflow markers and unparsable addresses, normalises the text, keeps floating addresses. */
export function onlyFloating(floating?: readonly string[]): OperatorFunction<SourceItem, AddressChange> {
  const keep = addressFilter(floating);
  // Text as a source wrote it → canonical text, or null when dropped. The same few addresses
  // come back again and again; bounded so a flood of distinct ones cannot grow it without end.
  const memo = new Map<string, string | null>();
  const canonical = (text: string): string | null => {
    let out = memo.get(text);
    if (out !== undefined) return out;
    try {
      const address = normaliseAddress(text);
      out = keep(address) ? address : null;
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
export function addressTransitions(opts: PipelineOptions = {}): OperatorFunction<AddressChange, AddressEvent> {
  const scheduler = opts.scheduler ?? asyncScheduler;
  const now = opts.now ?? nowMs;
  return (changes) => new Observable<AddressEvent>((subscriber) => {
    const machine = new AddressStateMachine(opts);
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
    const upstream = changes.subscribe({
      next: (change) => apply({ kind: 'change', change }),
      error: (err) => subscriber.error(err),
      complete: () => {
        upstreamDone = true;
        if (timers.size === 0) subscriber.complete();
      },
    });
    return () => {
      upstream.unsubscribe();
      for (const t of timers.values()) t.unsubscribe();
    };
  });
}

/** onlyFloating ▸ addressTransitions. */
export const addressEvents = (opts: PipelineOptions = {}): OperatorFunction<SourceItem, AddressEvent> =>
  pipe(onlyFloating(opts.floating), addressTransitions(opts));

/** Merges the sources and runs the pipeline: the AddressEvent stream failover consumes. */
export const watchAddresses = (sources: Array<Observable<SourceItem>>, opts: PipelineOptions = {}): Observable<AddressEvent> =>
  merge(...sources).pipe(addressEvents(opts));
