// The failover decision, pure: an address event and the phase failover has applied to that address
// in, the new phase and the ordered steps out. The controller (controller.ts) performs the steps.
// Which transitions exist is the watch contract's (TRANSITIONS), not a second set of rules here:
// the pipeline only sends real transitions, and anything else is a repeat with nothing to do.
import { TRANSITIONS, type AddressEvent, type AddressPhase } from '../watch/types';

export type FailoverStep =
  | 'drain'
  | 'undrain'
  | 'close-listeners'
  | 'barrier'
  | 'drop-locks'
  | 'take-over'
  | 'forget-clients'
  | 'start-grace'
  | 'open-listeners'
  | 'load-monitors'
  | 'bump-state'
  | 'notify';

export interface FailoverPlan {
  next: AddressPhase;
  steps: readonly FailoverStep[];
}

/**
 * Down: refuse new locks through the address first (synchronously, so nothing lands behind the
 * drop — not even a request already waiting on a monitor call), drop at once, then close its
 * listeners and forget its clients (no more monitoring, no pending GRANTED callbacks) while their
 * records stay for whoever takes it over. The address stays refused in the lock table while it
 * is gone.
 * With a lock journal, the drop waits for the barrier (every grant durable and in every live node's
 * index), so that no node hands out a range between the kernel's release and the owner's reclaim.
 * Up: the journal's entries taken over first, as locks awaiting reclaim (before the sockets open:
 * nothing can be granted in between), then grace (synchronous, so not one non-reclaim slips in once
 * the sockets are open), then the listeners, then the monitor records and a new state number, then
 * SM_NOTIFY: clients reclaim as soon as they are told.
 */
const STEPS: { readonly [T in AddressEvent['type']]: readonly FailoverStep[] } = {
  up: ['undrain', 'take-over', 'start-grace', 'open-listeners', 'load-monitors', 'bump-state', 'notify'],
  down: ['drain', 'barrier', 'drop-locks', 'close-listeners', 'forget-clients'],
  draining: ['drain'],
  'drain-ended': ['undrain'],
};

export function decide(applied: AddressPhase | undefined, ev: AddressEvent): FailoverPlan {
  const was = applied ?? 'down';
  const t = TRANSITIONS[ev.type];
  return t.from.includes(was) ? { next: t.to, steps: STEPS[ev.type] } : { next: was, steps: [] };
}
