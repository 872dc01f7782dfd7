// Grants of queued requests that the client may still refuse (GRANTED unanswered or denied, or a
// CANCEL after the grant), kept per owner in grant order, so that undoing one takes back exactly
// what it changed: bytes a later grant of the same owner covers stay as that grant set them (Linux
// never takes back an applied lock, nlmsvc_cancel_blocked), and that later grant's own undo then
// falls back to what the owner held before both. Decisions as data: takeUndo answers what to
// unlock and what to put back; blocks.undoGrant applies it.
//
// The table is not told when a client confirms a grant, so the log is bounded instead: entries
// whose bytes the owner no longer holds go at the owner's next grant on that file, the oldest
// beyond MAX_LOG go, and an owner's log goes with the owner. A grant no longer in the log is not
// taken back at all, as Linux does with every grant.
import { EOF, dec, inc, maxPos, minPos, parseRange } from './range';
import type { Pos } from './range';
import { mineOn } from './ranges';
import type { GrantEntry, Piece, Span } from './entries';
import type { LockState } from './state';
import type { BlockGranted, PriorLock } from './types';

/** Grants kept per owner: unconfirmed grants of one owner are few (the client confirms or the NLM gives up). */
const MAX_LOG = 16;

/** Logs a grant (see above for what the log forgets). */
export function recordGrant(st: LockState, g: BlockGranted, file: number, owner: number, s: Pos, e: Pos): void {
  const entry: GrantEntry = { g, key: st.F.key[file], start: s, end: e, prior: pieces(g.prior) };
  const log = st.grants.get(owner);
  if (!log) {
    st.grants.set(owner, [entry]);
    return;
  }
  const mine = mineOn(st, file, owner);
  let kept = 0;
  for (const x of log) if (x.key !== entry.key || heldIn(st, mine, x.g.lock.serverAddress, x)) log[kept++] = x;
  log.length = kept;
  if (log.push(entry) > MAX_LOG) log.shift();
}

/** One of the locks (the owner's, on one file) holds a byte of the span through the address. */
export function heldIn(st: LockState, mine: readonly number[], address: string, r: Span): boolean {
  const { L, H } = st;
  for (const l of mine) {
    if (L.start(l) <= r.end && L.end(l) >= r.start && st.addrIds.get(H.addr[L.holder[l]]).address === address) return true;
  }
  return false;
}

/**
 * Forgets the grant and answers how to undo it on the file: the spans of its range no later grant
 * of the owner covers, and the pieces to put back there (undefined: not in the log, nothing to
 * undo). Where a later grant covers a byte, that grant's prior becomes this grant's prior (what
 * undoing it will restore).
 */
export function takeUndo(st: LockState, g: BlockGranted, file: number, owner: number, r: Span): { open: Span[]; restore: Piece[] } | undefined {
  const log = st.grants.get(owner);
  const at = log ? log.findIndex((x) => x.g === g) : -1;
  if (!log || at < 0) return undefined;
  const prior = log[at].prior;
  log.splice(at, 1);
  if (log.length === 0) st.grants.delete(owner);
  let open: Span[] = [r];
  const key = st.F.key[file];
  for (let i = at; i < log.length && open.length !== 0; i++) {
    const x = log[i];
    if (x.key !== key) continue;
    const covered = clip(open, [x]);
    if (covered.length !== 0) x.prior = [...subtract(x.prior, covered), ...clip(prior, covered)];
    open = subtract(open, [x]);
  }
  return { open, restore: clip(prior, open) };
}

function pieces(prior: readonly PriorLock[]): Piece[] {
  return prior.flatMap((p) => {
    const pr = parseRange(p.offset, p.length);
    return pr ? [{ start: pr.start, end: pr.end, exclusive: p.exclusive, address: p.serverAddress }] : [];
  });
}

/** The parts of each item inside the spans. */
function clip<T extends Span>(items: readonly T[], spans: readonly Span[]): T[] {
  const out: T[] = [];
  for (const it of items) {
    for (const sp of spans) if (it.start <= sp.end && it.end >= sp.start) out.push({ ...it, start: maxPos(it.start, sp.start), end: minPos(it.end, sp.end) });
  }
  return out;
}

/** The parts of each item outside every span. */
function subtract<T extends Span>(items: readonly T[], spans: readonly Span[]): T[] {
  let out = [...items];
  for (const sp of spans) {
    out = out.flatMap((it) => {
      if (!(it.start <= sp.end && it.end >= sp.start)) return [it];
      const left = it.start < sp.start ? [{ ...it, end: dec(sp.start) }] : [];
      const right = it.end > sp.end && sp.end !== EOF ? [{ ...it, start: inc(sp.end) }] : [];
      return [...left, ...right];
    });
  }
  return out;
}
