// The lock table's changes as `lockdropctl watch` shows them. A drop (of an address, a host or an
// export) emits 'released' for every lock it frees and then one 'dropped', all within one
// synchronous call; the daemon reports the drop in one line with its trigger and timing, so the
// per-lock releases of a drop are left out here. Releases are held to the end of the current task
// and discarded when a 'dropped' followed; everything else keeps its order.
import { Observable, type OperatorFunction } from 'rxjs';
import type { LockChange } from '../locks';

export function withoutDropReleases(): OperatorFunction<LockChange, Exclude<LockChange, { type: 'dropped' }>> {
  type Kept = Exclude<LockChange, { type: 'dropped' }>;
  return (source) =>
    new Observable<Kept>((subscriber) => {
      let held: Kept[] = [];
      let scheduled = false;
      const flush = (): void => {
        scheduled = false;
        const out = held;
        held = [];
        for (const c of out) if (!subscriber.closed) subscriber.next(c);
      };
      return source.subscribe({
        next: (c) => {
          if (c.type === 'dropped') {
            held = held.filter((h) => h.type !== 'released');
            return;
          }
          if (c.type !== 'released' && held.length === 0) return subscriber.next(c);
          held.push(c);
          if (!scheduled) {
            scheduled = true;
            queueMicrotask(flush);
          }
        },
        error: (err) => subscriber.error(err),
        complete: () => {
          flush();
          subscriber.complete();
        },
      });
    });
}
