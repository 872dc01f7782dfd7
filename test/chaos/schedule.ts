// What the chaos test does, decided by its seed alone: the cluster's actions (which address moves
// where and how, which lockdropd is killed and for how long) and every client's and local
// process's sequence of lock requests. Outcomes depend on timing; the sequences do not, so a seed
// replays the same schedule (timing noise aside).

/** mulberry32: a small, fast, seedable generator of numbers in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A stream of its own for each actor, so one actor's choices never shift another's. */
export function streamFor(seed: number, actor: string): () => number {
  let h = seed >>> 0;
  for (const c of actor) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  return prng(h);
}

const between = (r: () => number, lo: number, hi: number): number => Math.round(lo + r() * (hi - lo));
const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

export type Tool = 'ip' | 'ipaddr2';

export type Action =
  /** Each address leaves its node and arrives at `to` (possibly the same node), all at once. */
  | { at: number; kind: 'move'; moves: { vip: number; to: number; tool: Tool }[] }
  /** lockdropd on `node` killed -9, started again `downMs` later. */
  | { at: number; kind: 'kill'; node: number; downMs: number };

export interface ScheduleOptions {
  seed: number;
  durationMs: number;
  nodes: number;
  vips: number;
  /** First action after this long (the clients take their first locks). */
  startMs?: number;
  /** Gap between actions. */
  gapMs?: [number, number];
}

/** Where address k starts: node k mod nodes. */
export const initialNode = (vip: number, nodes: number): number => vip % nodes;

/** The cluster's actions, in time order. */
export function chaosSchedule(o: ScheduleOptions): Action[] {
  const r = streamFor(o.seed, 'chaos');
  const [gapLo, gapHi] = o.gapMs ?? [3000, 6000];
  const at = Array.from({ length: o.vips }, (_, k) => initialNode(k, o.nodes));
  const out: Action[] = [];
  let downUntil = 0;
  for (let t = o.startMs ?? 4000; t < o.durationMs - 1000; t += between(r, gapLo, gapHi)) {
    const roll = r();
    if (roll < 0.15 && t >= downUntil) {
      const downMs = between(r, 1000, 4000);
      out.push({ at: t, kind: 'kill', node: Math.floor(r() * o.nodes), downMs });
      downUntil = t + downMs + 2000;
      continue;
    }
    const two = o.vips > 1 && roll > 0.75;
    const vips = two ? [0, 1].map(() => Math.floor(r() * o.vips)) : [Math.floor(r() * o.vips)];
    const moves = [...new Set(vips)].map((vip) => {
      const others = Array.from({ length: o.nodes }, (_, n) => n).filter((n) => n !== at[vip]);
      const to = r() < 0.2 ? at[vip]! : pick(r, others);
      at[vip] = to;
      return { vip, to, tool: (r() < 0.5 ? 'ip' : 'ipaddr2') as Tool };
    });
    out.push({ at: t, kind: 'move', moves });
  }
  return out;
}

/** The contended bytes of each file: three overlapping ranges and, rarely, the whole file. */
export const RANGES: readonly { offset: number; length: number }[] = [{ offset: 0, length: 100 }, { offset: 100, length: 100 }, { offset: 50, length: 100 }, { offset: 0, length: 0 }];
const RANGE_WEIGHTS = [0.35, 0.3, 0.3, 0.05];

function range(r: () => number): { offset: number; length: number } {
  let x = r();
  for (let i = 0; i < RANGES.length; i++) if ((x -= RANGE_WEIGHTS[i]!) < 0) return RANGES[i]!;
  return RANGES[0]!;
}

/** One lock request of a client: think, ask (blocking or not), hold if granted, unlock. */
export interface Intent {
  thinkMs: number;
  file: number;
  offset: number;
  length: number;
  exclusive: boolean;
  block: boolean;
  holdMs: number;
  /** A blocked request is cancelled after this long without its GRANTED callback. */
  waitMs: number;
}

export function clientIntents(seed: number, actor: string, files: number): () => Intent {
  const r = streamFor(seed, actor);
  return () => ({ thinkMs: between(r, 100, 800), file: Math.floor(r() * files), ...range(r), exclusive: r() < 0.7, block: r() < 0.5, holdMs: between(r, 300, 4000), waitMs: 5000 });
}

/** One lock of a local process on the nodes' side: POSIX or OFD, never waiting. */
export interface LocalIntent {
  thinkMs: number;
  file: number;
  offset: number;
  length: number;
  exclusive: boolean;
  kind: 'posix' | 'ofd';
  holdMs: number;
}

export function localIntents(seed: number, actor: string, files: number): () => LocalIntent {
  const r = streamFor(seed, actor);
  return () => ({ thinkMs: between(r, 300, 1500), file: Math.floor(r() * files), ...range(r), exclusive: r() < 0.6, kind: r() < 0.5 ? 'posix' : 'ofd', holdMs: between(r, 200, 1500) });
}
