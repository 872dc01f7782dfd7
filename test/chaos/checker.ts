// The chaos test's judge: a pure function over the timestamped logs of every client, local
// process and of the chaos itself (moves, kills), merged on one clock. It knows nothing of
// sockets or namespaces, so hand-written logs test it (checker.test.ts).
//
// When does an owner hold a lock? From the moment it *received* the grant (the LOCK reply, or a
// GRANTED callback while it waited) to the moment it *sent* its UNLOCK, or received the refusal of
// its reclaim (then it knows it lost the lock). That is the span in which the application relies
// on the lock, and it lies inside the span in which a correct server holds it for that owner: the
// server granted before the grant arrived and releases after the unlock left. Network delay and a
// slow event loop only shorten a recorded hold, never lengthen it, so two conflicting holds that
// overlap in the log overlapped in truth: no false positive from delay. (Counting from the
// server's send, or up to the unlock's reply, would widen the spans and report overlaps that never
// happened.) At equal timestamps a release comes before a grant.
//
// The checks:
//  - overlap: two owners hold conflicting locks (same file, overlapping bytes, one exclusive) at once;
//  - reclaim_refused: a reclaim of a held lock answered with anything but granted; names who held
//    the range then (or last took it);
//  - unreclaimed: a lock held when its server address was disrupted (moved, its node killed),
//    neither given up nor reclaimed by the end of the log.
//
// The window (issue 19): lockdrop keeps a moved lock from every lockdrop owner, but a process outside
// lockdrop locks the kernel directly. From an address's disruption (the old node's kernel releases
// its locks at the drop, or when its lockdropd is killed) to the moment the new node holds them
// again as placeholders ('protected': its arrival), nothing holds the range in the kernel. A local
// process granted a range in that window, conflicting with a lock held through that address at the
// disruption, is a window loss: counted and listed, not a violation, and so are the owner's overlap
// with it, its refused reclaim, its lock never reclaimed. The kernel granted the local process
// somewhere between its request and the reply it received, so a window counts if it was open at any
// moment of that span (delay cannot turn a window loss into a violation). Everything else stays a
// violation: an NLM client's conflicting grant (ever), a local process's outside a window.

/** A byte-range lock on one of the test's files. length 0: to the end of the file. */
export interface RangeLock {
  file: string;
  offset: number;
  length: number;
  exclusive: boolean;
}

export type EventKind =
  // an owner's view
  | 'requested' | 'granted' | 'denied' | 'denied_grace_period' | 'blocked' | 'released'
  | 'reclaim_ok' | 'reclaim_refused' | 'notify' | 'failed' | 'cancelled' | 'granted_stale'
  // the chaos's own actions: a server address disrupted (removed from its node, or its node's lockdropd killed)
  | 'disrupt'
  // a lockdropd's word: the address arrived and its moved locks are held again for their owners
  // (placeholders set), and a moved lock it could not hold because another locker had taken it
  | 'protected' | 'lost'
  // and the old node's drop of an address's locks (the kernel released them: its log line, just after)
  | 'dropped';

export interface ChaosEvent {
  /** Microseconds on one monotonic clock (CLOCK_MONOTONIC: process.hrtime in every process). */
  t: number;
  kind: EventKind;
  /** "host/svid" for an NLM owner, "local:name" for a local process. */
  owner?: string;
  /** The server address the owner locks through ('local' for a local process); for disrupt, the address disrupted. */
  via?: string;
  lock?: RangeLock;
  /** For an answer: when its request left (a reclaim counts for the disruptions before it left). */
  sent?: number;
  /** The NLM status, an errno, or what happened. */
  status?: string;
  /** requested: the operation (lock, reclaim, unlock, cancel); disrupt: move or kill. */
  op?: string;
  how?: 'reply' | 'callback';
  block?: boolean;
  /** disrupt: what (move, kill, return to the same node…) and where; protected, dropped: the node; lost: the file. */
  what?: string;
}

export interface Hold {
  owner: string;
  via: string;
  lock: RangeLock;
  from: number;
  /** undefined: still held at the end of the log. */
  to?: number;
  how: string;
}

export type Violation =
  | { kind: 'overlap'; t: number; a: Hold; b: Hold; /** µs both held it */ us: number }
  | { kind: 'reclaim_refused'; t: number; hold: Hold; status: string; /** who held (or last took) the range */ heldBy: Hold[] }
  | { kind: 'unreclaimed'; hold: Hold; since: number }
  | { kind: 'state'; what: string };

/** A local process granted, in an address's window, a range held through that address at its disruption. */
export interface WindowLoss {
  via: string;
  local: Hold;
  /** The lock held through `via` that the local process took. */
  victim: Hold;
  disruptedAt: number;
  /** undefined: the address was not protected again before the log ended. */
  protectedAt?: number;
  /** What it cost the victim: µs both held the range, its reclaim refused (the status), its lock never reclaimed. */
  overlapUs?: number;
  reclaimRefused?: string;
  unreclaimed?: boolean;
}

/** One disruption of an address and the moment it was protected again (undefined: not before the log ended). */
export interface Window {
  via: string;
  what: string;
  disruptedAt: number;
  /** A move's drop on the old node (when the kernel released the locks); a kill releases them at disruptedAt. */
  droppedAt?: number;
  protectedAt?: number;
  /** A move the old node never noticed (the address back before it looked: no drop, no arrival): no window. */
  unnoticed?: boolean;
}

/** One address's window: from its first disruption to its protection, with the disruptions in it. */
interface Span { from: number; to?: number; released: boolean; members: Window[] }

/**
 * The windows, from the chaos's and the daemons' events alone (so the owners' pass below knows
 * each one whole). A move the old node never noticed is no window: its kernel never let go, and
 * the next disruption finds the span unreleased (no drop, no kill).
 */
function windowsOf(sorted: readonly ChaosEvent[]): { windows: Window[]; spans: Map<string, Span[]> } {
  const windows: Window[] = [];
  const spans = new Map<string, Span[]>();
  const open = (via: string): Span | undefined => {
    const s = spans.get(via)?.at(-1);
    return s && s.to === undefined ? s : undefined;
  };
  const unnoticed = (via: string): void => {
    const s = open(via);
    if (!s || s.released) return;
    for (const w of s.members) w.unnoticed = true;
    spans.get(via)!.pop();
  };
  for (const e of sorted) {
    if (!e.via) continue;
    if (e.kind === 'disrupt') {
      const w: Window = { via: e.via, what: e.what ?? '', disruptedAt: e.t };
      windows.push(w);
      unnoticed(e.via);
      let s = open(e.via);
      if (!s) {
        s = { from: e.t, released: false, members: [] };
        spans.set(e.via, [...(spans.get(e.via) ?? []), s]);
      }
      if (e.op === 'kill') s.released = true;
      s.members.push(w);
    } else if (e.kind === 'dropped') {
      const s = open(e.via);
      if (!s) continue;
      s.released = true;
      for (const w of s.members) w.droppedAt ??= e.t;
    } else if (e.kind === 'protected') {
      // An arrival with no disruption before it (the start, a second line of one arrival) closes nothing.
      const s = open(e.via);
      if (!s) continue;
      s.to = e.t;
      for (const w of s.members) w.protectedAt = e.t;
    }
  }
  return { windows, spans };
}

export interface CheckReport {
  counts: {
    requests: number;
    granted: number;
    grantedByCallback: number;
    denied: number;
    deniedGrace: number;
    blocked: number;
    failed: number;
    released: number;
    reclaimsOk: number;
    reclaimsRefused: number;
    notifies: number;
    disruptions: number;
    /** Holds given up (unlocked) after a disruption before they were reclaimed: not violations. */
    givenUpBeforeReclaim: number;
    /** Local processes' grants in a window, against a lock held through the address (windowLosses below). */
    windowLosses: number;
    /** The longest window (disruption → protected) in ms; 0 without one. */
    windowMsMax: number;
    /** Moved locks a node could not hold for reclaim on arrival (another locker had them): its 'lost' lines. */
    lostAtArrival: number;
  };
  violations: Violation[];
  windowLosses: WindowLoss[];
  /** Per disruption, in order. */
  windows: Window[];
  /** Holds still open at the end of the log. */
  open: Hold[];
}

const end = (l: RangeLock): number => (l.length === 0 ? Infinity : l.offset + l.length);

/** Same file, overlapping bytes, and at least one of them exclusive. */
export function conflicts(a: RangeLock, b: RangeLock): boolean {
  return a.file === b.file && (a.exclusive || b.exclusive) && a.offset < end(b) && b.offset < end(a);
}

/** A hold, and the disruptions of its address it has not yet answered with a reclaim (times, oldest first). */
type ActiveHold = Hold & { unanswered?: number[] };

const holdKey = (owner: string, l: RangeLock): string => `${owner}|${l.file}|${l.offset}|${l.length}|${l.exclusive ? 'x' : 's'}`;

/** Ends of holds sort before starts at the same instant: a release, then a grant, is no overlap. */
const order = (k: EventKind): number => (k === 'released' || k === 'reclaim_refused' ? 0 : k === 'disrupt' || k === 'dropped' || k === 'protected' ? 1 : 2);

const isLocal = (h: { via: string }): boolean => h.via === 'local';

export function check(events: readonly ChaosEvent[]): CheckReport {
  const sorted = events.map((e, i) => ({ e, i })).sort((x, y) => x.e.t - y.e.t || order(x.e.kind) - order(y.e.kind) || x.i - y.i).map((x) => x.e);
  const counts: CheckReport['counts'] = {
    requests: 0, granted: 0, grantedByCallback: 0, denied: 0, deniedGrace: 0, blocked: 0, failed: 0, released: 0,
    reclaimsOk: 0, reclaimsRefused: 0, notifies: 0, disruptions: 0, givenUpBeforeReclaim: 0, windowLosses: 0, windowMsMax: 0, lostAtArrival: 0,
  };
  const violations: Violation[] = [];
  const active = new Map<string, ActiveHold>();
  const all: Hold[] = [];
  const overlapping = new Map<Hold, Set<Hold>>();
  const { windows, spans } = windowsOf(sorted);
  let disruptions = 0;
  const losses: WindowLoss[] = [];
  /** The window loss behind an overlap, by either hold of the pair; and the losses each victim suffered. */
  const lossOfPair = new Map<Hold, Map<Hold, WindowLoss>>();
  const victims = new Map<Hold, WindowLoss[]>();

  const overlapEnds = (h: Hold, o: Hold, t: number): void => {
    const from = Math.max(h.from, o.from);
    const loss = lossOfPair.get(h)?.get(o);
    if (loss) loss.overlapUs = t - from;
    else violations.push({ kind: 'overlap', t: from, a: o.from <= h.from ? o : h, b: o.from <= h.from ? h : o, us: t - from });
  };
  const close = (h: Hold, t: number): void => {
    h.to = t;
    active.delete(holdKey(h.owner, h.lock));
    // Overlaps are measured when the first of the two ends.
    for (const o of overlapping.get(h) ?? []) if (overlapping.get(o)?.delete(h)) overlapEnds(h, o, t);
    overlapping.delete(h);
  };
  /**
   * The window of o's address in which a local process's grant (received at t, asked for at sent)
   * took o's range, if o was held at a disruption of that window: the kernel granted somewhere in
   * [sent, t], so any window open in that span counts.
   */
  const windowLoss = (local: Hold, sent: number, o: ActiveHold): WindowLoss | undefined => {
    if (isLocal(o)) return undefined;
    // Held at the span's release: held at one of its disruptions, or granted by the old node after
    // the first of them (a move takes time before the address goes) and still held now.
    const heldIn = (s: Span): boolean => (o.unanswered ?? []).some((d) => d >= s.from && (s.to === undefined || d < s.to)) || (o.from >= s.from && (s.to === undefined || o.from < s.to));
    const w = (spans.get(o.via) ?? []).filter((s) => s.from <= local.from && (s.to === undefined || s.to > sent))
      .reverse().find(heldIn);
    return w && { via: o.via, local, victim: o, disruptedAt: w.from, ...(w.to === undefined ? {} : { protectedAt: w.to }) };
  };
  const excuse = (loss: WindowLoss): void => {
    losses.push(loss);
    for (const [a, b] of [[loss.local, loss.victim], [loss.victim, loss.local]] as const) {
      if (!lossOfPair.has(a)) lossOfPair.set(a, new Map());
      lossOfPair.get(a)!.set(b, loss);
    }
    victims.set(loss.victim, [...(victims.get(loss.victim) ?? []), loss]);
  };
  /** The window loss behind a victim's lock not coming back: one in the window of a disruption it has not answered yet. */
  const victimLoss = (h: ActiveHold): WindowLoss | undefined =>
    victims.get(h)?.find((l) => h.unanswered?.some((d) => d >= l.disruptedAt && (l.protectedAt === undefined || d < l.protectedAt)));

  /** Per address, the time of its last disruption the old node noticed. */
  const lastDisruption = new Map<string, number>();
  for (const e of sorted) {
    const key = e.owner && e.lock ? holdKey(e.owner, e.lock) : '';
    switch (e.kind) {
      case 'requested': counts.requests++; break;
      case 'denied': counts.denied++; break;
      case 'denied_grace_period': counts.deniedGrace++; break;
      case 'blocked': counts.blocked++; break;
      case 'failed': counts.failed++; break;
      case 'notify': counts.notifies++; break;
      case 'disrupt': {
        counts.disruptions++;
        // A move its node never noticed took nothing from anyone: nothing to reclaim.
        if (windows[disruptions++]?.unnoticed) break;
        for (const h of active.values()) if (h.via === e.via) h.unanswered = [...(h.unanswered ?? []), e.t];
        if (e.via) lastDisruption.set(e.via, e.t);
        break;
      }
      case 'dropped': {
        // A lock the old node granted after the move began is held at its drop too: it must come back.
        const since = e.via === undefined ? undefined : lastDisruption.get(e.via);
        if (since === undefined) break;
        for (const h of active.values()) {
          if (h.via === e.via && h.from >= since && !h.unanswered?.some((d) => d >= since)) h.unanswered = [...(h.unanswered ?? []), since];
        }
        break;
      }
      case 'lost': counts.lostAtArrival++; break;
      case 'granted': {
        if (!e.owner || !e.lock) break;
        counts.granted++;
        if (e.how === 'callback') counts.grantedByCallback++;
        if (active.has(key)) break; // a second grant of what it holds (a retransmitted callback)
        const h: ActiveHold = { owner: e.owner, via: e.via ?? '?', lock: e.lock, from: e.t, how: e.how ?? 'reply' };
        const clash = new Set<Hold>();
        for (const o of active.values()) {
          if (o.owner !== h.owner && conflicts(o.lock, h.lock)) {
            clash.add(o);
            overlapping.get(o)!.add(h);
            const loss = isLocal(h) ? windowLoss(h, e.sent ?? e.t, o) : undefined;
            if (loss) excuse(loss);
          }
        }
        overlapping.set(h, clash);
        active.set(key, h);
        all.push(h);
        break;
      }
      case 'released': {
        counts.released++;
        const h = active.get(key);
        if (!h) break;
        if (h.unanswered?.length) counts.givenUpBeforeReclaim++;
        close(h, e.t);
        break;
      }
      case 'reclaim_ok': {
        counts.reclaimsOk++;
        const h = active.get(key);
        // A reclaim answers the disruptions that happened before it left.
        if (h?.unanswered) h.unanswered = h.unanswered.filter((d) => d >= (e.sent ?? e.t));
        break;
      }
      case 'reclaim_refused': {
        counts.reclaimsRefused++;
        if (!e.lock) break;
        const h: ActiveHold = active.get(key) ?? { owner: e.owner ?? '?', via: e.via ?? '?', lock: e.lock, from: e.t, how: 'unknown' };
        const holders = [...active.values()].filter((o) => o !== h && o.owner !== h.owner && conflicts(o.lock, h.lock));
        // Nobody holds it now: name whoever took it last since the lock was disrupted.
        const since = h.unanswered?.[0] ?? h.from;
        const last = all.filter((o) => o.owner !== h.owner && o.from >= since && conflicts(o.lock, h.lock)).slice(-1);
        const { unanswered: _, ...hold } = h;
        const loss = victimLoss(h);
        if (loss) loss.reclaimRefused = e.status ?? '?';
        else violations.push({ kind: 'reclaim_refused', t: e.t, hold, status: e.status ?? '?', heldBy: holders.length ? holders : last });
        if (active.get(key) === h) close(h, e.t);
        break;
      }
      default: break;
    }
  }
  for (const h of active.values()) {
    const { unanswered, ...hold } = h;
    if (!unanswered?.length) continue;
    const loss = victimLoss(h);
    if (loss) loss.unreclaimed = true;
    else violations.push({ kind: 'unreclaimed', hold, since: unanswered[0]! });
  }
  // Overlaps still open at the end of the log: measured up to its last event.
  const last = sorted.length ? sorted[sorted.length - 1]!.t : 0;
  for (const [h, others] of overlapping) {
    for (const o of others) if (overlapping.get(o)?.delete(h)) overlapEnds(h, o, last);
  }
  violations.sort((a, b) => ('t' in a ? a.t : 0) - ('t' in b ? b.t : 0));
  counts.windowLosses = losses.length;
  counts.windowMsMax = windowStats(windows).max;
  const plain = (h: Hold): Hold => {
    const { unanswered: _, ...hold } = h as ActiveHold;
    return hold;
  };
  return {
    counts, violations, windows,
    windowLosses: losses.map((l) => ({ ...l, local: plain(l.local), victim: plain(l.victim) })),
    open: [...active.values()].map(plain),
  };
}

const rangeText = (l: RangeLock): string => `${l.exclusive ? 'W' : 'R'} ${l.file}[${l.offset}${l.length === 0 ? '-EOF' : `+${l.length}`}]`;
const holdText = (h: Hold, t0: number): string => `${h.owner} via ${h.via} (${rangeText(h.lock)}, from ${((h.from - t0) / 1e6).toFixed(3)} s)`;

/** One line per violation, times in seconds since t0. */
export function describe(v: Violation, t0 = 0): string {
  const s = (t: number): string => `${((t - t0) / 1e6).toFixed(3)} s`;
  switch (v.kind) {
    case 'overlap': return `two holders at ${s(v.t)} for ${(v.us / 1000).toFixed(0)} ms: ${holdText(v.a, t0)} and ${holdText(v.b, t0)}`;
    case 'reclaim_refused': return `reclaim refused (${v.status}) at ${s(v.t)}: ${holdText(v.hold, t0)}; range held by ${v.heldBy.length ? v.heldBy.map((h) => holdText(h, t0)).join(', ') : 'no logged owner (someone outside the logs, or nobody)'}`;
    case 'unreclaimed': return `never reclaimed after the disruption at ${s(v.since)}: ${holdText(v.hold, t0)}`;
    case 'state': return v.what;
  }
}

/** One line per window loss, times in seconds since t0. */
export function describeLoss(l: WindowLoss, t0 = 0): string {
  const s = (t: number): string => `${((t - t0) / 1e6).toFixed(3)} s`;
  const cost = [
    l.overlapUs === undefined ? '' : `both held it ${(l.overlapUs / 1000).toFixed(0)} ms`,
    l.reclaimRefused ? `its reclaim refused (${l.reclaimRefused})` : '',
    l.unreclaimed ? 'never reclaimed' : '',
  ].filter(Boolean).join(', ');
  return `local process took ${rangeText(l.local.lock)} (${l.local.owner}, at ${s(l.local.from)}) in the window of ${l.via} (disrupted at ${s(l.disruptedAt)}, ${l.protectedAt === undefined ? 'not protected again' : `protected at ${s(l.protectedAt)}`}) from ${holdText(l.victim, t0)}${cost ? `: ${cost}` : ''}`;
}

/**
 * Window sizes in ms: how many, the median and the longest; unprotected ones are left out. From the
 * disruption (as the checker judges), or `fromRelease`: from the kernel's release (a move's drop, a kill).
 */
export function windowStats(ws: readonly Window[], fromRelease = false): { n: number; p50: number; max: number } {
  const ms = ws.flatMap((w) => (w.protectedAt === undefined || w.unnoticed ? [] : [(w.protectedAt - (fromRelease ? w.droppedAt ?? w.disruptedAt : w.disruptedAt)) / 1000])).sort((a, b) => a - b);
  return { n: ms.length, p50: ms.length ? ms[Math.floor((ms.length - 1) / 2)]! : 0, max: ms.length ? ms[ms.length - 1]! : 0 };
}

// ---- the quiet state: the kernel's view against lockdrop's, and the clients' against both ----

/** One byte-range lock as the kernel lists it (/proc/PID/fdinfo/FD "lock:" lines, /proc/locks). */
export interface KernelLock {
  kind: string;
  exclusive: boolean;
  /** "maj:min:inode" as /proc/locks prints it. */
  inode: string;
  start: number;
  /** Inclusive; Infinity for EOF. */
  last: number;
}

/** Parses /proc/locks-style lines ("1: OFDLCK ADVISORY  WRITE -1 00:2d:5 0 99", with or without a "lock:" prefix). */
export function parseKernelLocks(text: string): KernelLock[] {
  const out: KernelLock[] = [];
  for (const line of text.split('\n')) {
    const m = /(\d+):\s+(POSIX|OFDLCK|FLOCK|LEASE|DELEG)\s+\S+\s+(READ|WRITE)\s+(-?\d+)\s+([0-9a-f]+:[0-9a-f]+:\d+)\s+(\d+)\s+(\d+|EOF)/i.exec(line);
    if (!m || line.includes('->')) continue; // '->' marks a blocked waiter
    out.push({ kind: m[2]!, exclusive: m[3] === 'WRITE', inode: m[5]!, start: Number(m[6]), last: m[7] === 'EOF' ? Infinity : Number(m[7]) });
  }
  return out;
}

/** One lock by owner and file, range as [start, last] inclusive, last Infinity = EOF. */
export interface OwnedRange {
  owner: string;
  file: string;
  exclusive: boolean;
  start: number;
  last: number;
}

/** Merges each owner's adjacent or overlapping ranges of one mode, as POSIX locking (and the kernel) does. */
export function coalesce(ranges: readonly OwnedRange[]): OwnedRange[] {
  const groups = new Map<string, OwnedRange[]>();
  for (const r of ranges) {
    const k = `${r.owner}|${r.file}|${r.exclusive}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const out: OwnedRange[] = [];
  for (const g of groups.values()) {
    g.sort((a, b) => a.start - b.start);
    let cur = { ...g[0]! };
    for (const r of g.slice(1)) {
      if (r.start <= cur.last + 1) cur.last = Math.max(cur.last, r.last);
      else {
        out.push(cur);
        cur = { ...r };
      }
    }
    out.push(cur);
  }
  return out;
}

/**
 * Compares two views of the same locks: each owner's coalesced ranges on one file, as a multiset.
 * The owners' names count only with `byOwner` (the kernel names owners by open file description,
 * lockdrop by NLM owner). Returns what one side has and the other lacks.
 */
export function compareViews(a: readonly OwnedRange[], b: readonly OwnedRange[], byOwner = false): { onlyA: string[]; onlyB: string[] } {
  const shape = (rs: readonly OwnedRange[]): Map<string, number> => {
    const groups = new Map<string, OwnedRange[]>();
    for (const r of coalesce(rs)) {
      const k = `${r.owner}|${r.file}`;
      groups.set(k, [...(groups.get(k) ?? []), r]);
    }
    const m = new Map<string, number>();
    for (const g of groups.values()) {
      const s = `${byOwner ? `${g[0]!.owner} ` : ''}${g[0]!.file}: ${g.sort((x, y) => x.start - y.start || Number(x.exclusive) - Number(y.exclusive)).map((r) => `${r.exclusive ? 'W' : 'R'}${r.start}-${r.last === Infinity ? 'EOF' : r.last}`).join(',')}`;
      m.set(s, (m.get(s) ?? 0) + 1);
    }
    return m;
  };
  const [ma, mb] = [shape(a), shape(b)];
  const diff = (x: Map<string, number>, y: Map<string, number>): string[] =>
    [...x].flatMap(([k, n]) => Array.from({ length: Math.max(0, n - (y.get(k) ?? 0)) }, () => k));
  return { onlyA: diff(ma, mb), onlyB: diff(mb, ma) };
}

/** Pairs of different owners' conflicting ranges within one view (a lock table must never hold one). */
export function conflictsWithin(ranges: readonly OwnedRange[]): string[] {
  const text = (r: OwnedRange): string => `${r.owner} ${r.exclusive ? 'W' : 'R'} ${r.file}[${r.start}-${r.last === Infinity ? 'EOF' : r.last}]`;
  const out: string[] = [];
  ranges.forEach((a, i) => {
    for (const b of ranges.slice(i + 1)) {
      if (a.owner !== b.owner && a.file === b.file && (a.exclusive || b.exclusive) && a.start <= b.last && b.start <= a.last) out.push(`${text(a)} and ${text(b)}`);
    }
  });
  return out;
}

/** Holds still open, as owned ranges (owner = the NLM owner), for compareViews against a server's table. */
export function holdsAsRanges(holds: readonly Hold[]): OwnedRange[] {
  return holds.map((h) => ({ owner: h.owner, file: h.lock.file, exclusive: h.lock.exclusive, start: h.lock.offset, last: h.lock.length === 0 ? Infinity : h.lock.offset + h.lock.length - 1 }));
}
