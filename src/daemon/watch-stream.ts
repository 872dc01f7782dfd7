// The lock table's changes as `lockdropctl watch` shows them. A drop (of an address, a host or an
// export) emits 'released' for every lock it frees and then one 'dropped', all within one
// synchronous call; the daemon reports the drop in one line with its trigger and timing, so the
// per-lock releases of a drop are left out here. Releases are held to the end of the current task
// and discarded when a 'dropped' followed; everything else keeps its order. WatchFeed is the
// whole stream: the daemon's own lines merged with those changes.
import { Observable, Subject, map, merge, type OperatorFunction } from 'rxjs';
import type { WatchEvent } from '../control';
import type { LockChange } from '../locks';
import { describeChange } from './views';

/** What `watch` shows: lines the daemon emits, and the lock table's changes, subscribed only while someone watches (free otherwise). */
export class WatchFeed {
  private readonly lines = new Subject<WatchEvent>();
  constructor(private readonly changes: Observable<LockChange>) {}

  emit(e: Omit<WatchEvent, 'at'>): void {
    if (this.lines.observed) this.lines.next({ at: new Date().toISOString(), ...e } as WatchEvent);
  }

  stream(): Observable<WatchEvent> {
    return merge(
      this.lines,
      this.changes.pipe(
        withoutDropReleases(), // drops are reported in one line, with their trigger and timing
        map((c): WatchEvent => describeChange(c)),
      ),
    );
  }

  complete(): void {
    this.lines.complete();
  }
}

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
