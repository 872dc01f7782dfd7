// The failover decision, pure: an address event and what we knew of that address in, the new
// knowledge and the ordered steps out. The controller (controller.ts) performs the steps.
import type { AddressEvent } from '../watch/types';

export interface AddressStatus {
  /** The address is local and its listeners are (being) opened. */
  present: boolean;
  /** Its removal was requested: no new locks through it until it is gone or the request failed. */
  draining: boolean;
  /** When the last transition happened (ms, the watch clock). */
  since: number;
}

export type FailoverStep =
  | 'drain'
  | 'undrain'
  | 'close-listeners'
  | 'drop-locks'
  | 'stop-monitoring'
  | 'start-grace'
  | 'open-listeners'
  | 'load-monitors'
  | 'bump-state'
  | 'notify';

export interface Decision {
  next: AddressStatus;
  steps: FailoverStep[];
}

/**
 * Down: refuse new locks through the address first (synchronously, so nothing lands behind the
 * drop — not even a request already waiting on a monitor call), drop at once, then close its
 * listeners and stop monitoring its hosts while their records stay for whoever takes it over.
 * The address stays refused in the lock table while it is gone.
 * Up: grace first (synchronous, so not one non-reclaim slips in once the sockets are open), then
 * the listeners, then the monitor records and a new state number, then SM_NOTIFY: clients reclaim
 * as soon as they are told.
 */
export function decide(known: AddressStatus | undefined, ev: AddressEvent): Decision {
  const was = known ?? { present: false, draining: false, since: ev.at };
  switch (ev.type) {
    case 'up':
      if (was.present) return { next: { ...was, draining: false }, steps: was.draining ? ['undrain'] : [] };
      return {
        next: { present: true, draining: false, since: ev.at },
        steps: ['undrain', 'start-grace', 'open-listeners', 'load-monitors', 'bump-state', 'notify'],
      };
    case 'down':
      if (!was.present && !was.draining) return { next: was, steps: [] };
      return {
        next: { present: false, draining: false, since: ev.at },
        steps: ['drain', 'drop-locks', 'close-listeners', 'stop-monitoring'],
      };
    case 'draining':
      if (!was.present || was.draining) return { next: was, steps: [] };
      return { next: { ...was, draining: true }, steps: ['drain'] };
    case 'drain-ended':
      if (!was.draining) return { next: was, steps: [] };
      return { next: { ...was, draining: false }, steps: ['undrain'] };
  }
}
