// Model-based test: random sequences of LOCK (blocking or not), UNLOCK, TEST, CANCEL and drops
// across owners, files and server addresses, run against the LockTable and against a reference
// model that keeps a byte map over a small file. Answers must be identical, and after every
// step the table's records must be exactly the model's maximal runs (so: merged, non-overlapping,
// no conflicting overlaps) and its indexes must equal a full rescan.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LockTable, hostKey } from '../../src/locks';
import type { DropCounts, LockOwner, LockRequest, LockStatus } from '../../src/locks';
import { checkIndexes } from '../../src/locks/testing';

const SIZE = 32; // bytes modelled; requests stay below 24, so "to EOF" is [offset, SIZE-1]
const FILES = [Buffer.from('file-a'), Buffer.from('file-b')];
const ADDRS = ['10.0.0.1', '10.0.0.2', '10.0.0.3'];
const HOSTS = [hostKey('h1', '192.168.0.1'), hostKey('h2', '192.168.0.2'), hostKey('h1', '192.168.0.9')];
// Two owners share host 0 (different svid), and host 2 claims host 0's name and owner handle.
const OWNERS: LockOwner[] = [
  { host: HOSTS[0], svid: 1, oh: Buffer.from('oh-1') },
  { host: HOSTS[0], svid: 2, oh: Buffer.from('oh-1') },
  { host: HOSTS[1], svid: 1, oh: Buffer.from('oh-2') },
  { host: HOSTS[2], svid: 1, oh: Buffer.from('oh-1') },
];

type Cmd =
  | { k: 'lock'; o: number; f: number; s: number; len: number; x: boolean; a: number; block: boolean }
  | { k: 'unlock'; o: number; f: number; s: number; len: number }
  | { k: 'test'; o: number; f: number; s: number; len: number; x: boolean }
  | { k: 'cancel'; pick: number; exact: boolean; o: number; f: number; s: number; len: number; x: boolean }
  | { k: 'dropAddr'; a: number }
  | { k: 'dropHost'; h: number }
  | { k: 'dropExport'; f: number };

const owner = fc.integer({ min: 0, max: OWNERS.length - 1 });
const file = fc.integer({ min: 0, max: FILES.length - 1 });
const start = fc.integer({ min: 0, max: 11 });
const len = fc.integer({ min: 0, max: 6 });
const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ k: fc.constant('lock' as const), o: owner, f: file, s: start, len, x: fc.boolean(), a: fc.integer({ min: 0, max: ADDRS.length - 1 }), block: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('unlock' as const), o: owner, f: file, s: start, len }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('test' as const), o: owner, f: file, s: start, len, x: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('cancel' as const), pick: fc.nat(), exact: fc.boolean(), o: owner, f: file, s: start, len, x: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('dropAddr' as const), a: fc.integer({ min: 0, max: ADDRS.length - 1 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('dropHost' as const), h: fc.integer({ min: 0, max: HOSTS.length - 1 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('dropExport' as const), f: file }) },
);
// Each file is its own export.
const exportOf = (fh: Buffer): string => `/export/${FILES.findIndex((f) => f.equals(fh))}`;

interface Cell {
  x: boolean;
  a: number;
}
interface Run {
  o: number;
  f: number;
  s: number;
  e: number;
  x: boolean;
  a: number;
}
interface MBlock extends Run {
  waiter: number;
}

const endOf = (s: number, l: number): number => (l === 0 ? SIZE - 1 : s + l - 1);
const hostOf = (o: number): number => HOSTS.indexOf(OWNERS[o].host);

class Model {
  bytes: Map<number, Cell>[][] = FILES.map(() => Array.from({ length: SIZE }, () => new Map<number, Cell>()));
  queues: MBlock[][] = FILES.map(() => []);
  grants: { f: number; waiter: number }[] = [];

  conflicts(o: number, f: number, s: number, e: number, x: boolean): Set<number> {
    const holders = new Set<number>();
    for (let i = s; i <= e; i++) for (const [p, c] of this.bytes[f][i]) if (p !== o && (x || c.x)) holders.add(p);
    return holders;
  }

  runs(): Run[] {
    const out: Run[] = [];
    for (let f = 0; f < FILES.length; f++) {
      for (let o = 0; o < OWNERS.length; o++) {
        let cur: Run | null = null;
        for (let i = 0; i < SIZE; i++) {
          const c = this.bytes[f][i].get(o);
          if (cur && c && c.x === cur.x && c.a === cur.a) {
            cur.e = i;
            continue;
          }
          if (cur) out.push(cur);
          cur = c ? { o, f, s: i, e: i, x: c.x, a: c.a } : null;
        }
        if (cur) out.push(cur);
      }
    }
    return out;
  }

  apply(o: number, f: number, s: number, e: number, x: boolean, a: number): void {
    for (let i = s; i <= e; i++) this.bytes[f][i].set(o, { x, a });
  }

  rescan(f: number): void {
    let progress = true;
    while (progress) {
      progress = false;
      for (const b of [...this.queues[f]]) {
        if (this.conflicts(b.o, f, b.s, b.e, b.x).size) continue;
        this.queues[f].splice(this.queues[f].indexOf(b), 1);
        this.apply(b.o, f, b.s, b.e, b.x, b.a);
        this.grants.push({ f, waiter: b.waiter });
        progress = true;
      }
    }
  }

  deadlock(o: number, holders: Set<number>): boolean {
    const seen = new Set(holders);
    const stack = [...holders];
    while (stack.length) {
      const p = stack.pop()!;
      if (p === o) return true;
      for (const q of this.queues.flat().filter((b) => b.o === p)) {
        for (const h of this.conflicts(p, q.f, q.s, q.e, q.x)) if (!seen.has(h)) (seen.add(h), stack.push(h));
      }
    }
    return false;
  }

  lock(c: Extract<Cmd, { k: 'lock' }>, waiter: number): LockStatus {
    const e = endOf(c.s, c.len);
    const holders = this.conflicts(c.o, c.f, c.s, e, c.x);
    const same = (b: MBlock) => b.o === c.o && b.s === c.s && b.e === e && b.x === c.x;
    if (holders.size === 0) {
      this.apply(c.o, c.f, c.s, e, c.x, c.a);
      const i = this.queues[c.f].findIndex(same);
      if (i >= 0) this.queues[c.f].splice(i, 1);
      this.rescan(c.f);
      return 'granted';
    }
    if (!c.block) return 'denied';
    if (this.queues[c.f].some(same)) return 'blocked';
    if (this.deadlock(c.o, holders)) return 'deadlck';
    this.queues[c.f].push({ o: c.o, f: c.f, s: c.s, e, x: c.x, a: c.a, waiter });
    return 'blocked';
  }

  unlock(o: number, f: number, s: number, e: number): void {
    // The owner's queued requests inside the range are cancelled first (Linux nlmsvc_unlock).
    this.queues[f] = this.queues[f].filter((b) => !(b.o === o && b.s >= s && b.e <= e));
    for (let i = s; i <= e; i++) this.bytes[f][i].delete(o);
    this.rescan(f);
  }

  cancel(o: number, f: number, s: number, e: number, x: boolean): LockStatus {
    const i = this.queues[f].findIndex((b) => b.o === o && b.s === s && b.e === e && b.x === x);
    if (i < 0) return 'denied';
    this.queues[f].splice(i, 1);
    return 'granted';
  }

  drop(match: (o: number, a: number, f: number) => boolean): DropCounts {
    const before = this.grants.length;
    const runs = this.runs().filter((r) => match(r.o, r.a, r.f));
    const blocks = this.queues.flat().filter((b) => match(b.o, b.a, b.f));
    const clients = new Set([...runs, ...blocks].map((r) => hostOf(r.o)));
    for (const r of runs) for (let i = r.s; i <= r.e; i++) this.bytes[r.f][i].delete(r.o);
    this.queues = this.queues.map((q) => q.filter((b) => !match(b.o, b.a, b.f)));
    for (let f = 0; f < FILES.length; f++) this.rescan(f);
    return { locks: runs.length, shares: 0, blocked: blocks.length, clients: clients.size, woken: this.grants.length - before };
  }
}

/** Where the modelled bytes start in the table: 0, or just below 2^53 to cross into bigints. */
let BASE = 0n;

function request(o: number, f: number, s: number, l: number, x: boolean, a = 0): LockRequest {
  return { fh: FILES[f], owner: OWNERS[o], exclusive: x, offset: BASE + BigInt(s), length: BigInt(l), serverAddress: ADDRS[a] };
}

const runKey = (r: Run): string => `f${r.f} o${r.o} ${r.s}-${r.e} ${r.x ? 'X' : 'S'} a${r.a}`;

function tableRuns(t: LockTable): Run[] {
  return [...t.locks()].map((l) => {
    const s = Number(l.offset - BASE);
    return {
      o: OWNERS.findIndex((o) => o.host === l.owner.host && o.svid === l.owner.svid && o.oh.equals(l.owner.oh)),
      f: FILES.findIndex((f) => f.equals(l.fh)),
      s,
      e: endOf(s, Number(l.length)),
      x: l.exclusive,
      a: ADDRS.indexOf(l.serverAddress),
    };
  });
}

function checkStep(t: LockTable, m: Model, grants: { f: number; waiter: number }[], step: string): void {
  assert.deepEqual(checkIndexes(t), [], `indexes after ${step}`);
  const got = tableRuns(t);
  assert.deepEqual(got.map(runKey).sort(), m.runs().map(runKey).sort(), `locks after ${step}`);
  // Direct invariants on the table's own records.
  for (const p of got) {
    for (const q of got) {
      if (p === q || p.f !== q.f || p.s > q.e || q.s > p.e) continue;
      assert.equal(p.o === q.o, false, `an owner's locks overlap after ${step}`);
      assert.ok(!p.x && !q.x, `conflicting locks overlap after ${step}`);
    }
  }
  const queued = [...t.blocked()].map((b) => `${FILES.findIndex((f) => f.equals(b.request.fh))}:${b.waiter}`);
  const want = m.queues.flatMap((q, f) => q.map((b) => `${f}:${b.waiter}`));
  assert.deepEqual(queued.sort(), want.sort(), `queues after ${step}`);
  for (const [f, q] of m.queues.entries()) for (const b of q) assert.ok(m.conflicts(b.o, f, b.s, b.e, b.x).size > 0, 'a grantable waiter was left queued');
  // Per file, waiters are granted in the same order.
  for (let f = 0; f < FILES.length; f++) {
    assert.deepEqual(
      grants.filter((g) => g.f === f).map((g) => g.waiter),
      m.grants.filter((g) => g.f === f).map((g) => g.waiter),
      `grants on file ${f} after ${step}`,
    );
  }
  for (const [a, addr] of ADDRS.entries()) {
    const hosts = new Set([...m.runs().filter((r) => r.a === a), ...m.queues.flat().filter((b) => b.a === a)].map((r) => OWNERS[r.o].host));
    assert.deepEqual([...t.hostsAt(addr)].sort(), [...hosts].sort(), `hostsAt(${addr}) after ${step}`);
  }
}

function runCommands(cmds: Cmd[]): void {
  const grants: { f: number; waiter: number }[] = [];
  const t = new LockTable({
    exportOf,
    onBlockGranted: (g) => grants.push({ f: FILES.findIndex((f) => f.equals(g.lock.fh)), waiter: g.waiter as number }),
  });
  const m = new Model();
  cmds.forEach((c, i) => {
    const step = `#${i} ${JSON.stringify(c)}`;
    switch (c.k) {
      case 'lock': {
        const got = t.lock(request(c.o, c.f, c.s, c.len, c.x, c.a), { block: c.block, reclaim: false, waiter: () => i });
        assert.equal(got, m.lock(c, i), step);
        break;
      }
      case 'unlock':
        assert.equal(t.unlock(request(c.o, c.f, c.s, c.len, false)), 'granted', step);
        m.unlock(c.o, c.f, c.s, endOf(c.s, c.len));
        break;
      case 'test': {
        const got = t.test(request(c.o, c.f, c.s, c.len, c.x));
        const e = endOf(c.s, c.len);
        const conflicting = m.runs().filter((r) => r.f === c.f && r.o !== c.o && (c.x || r.x) && r.s <= e && r.e >= c.s);
        if (conflicting.length === 0) {
          assert.deepEqual(got, { status: 'granted' }, step);
        } else {
          assert.equal(got.status, 'denied', step);
          const low = Math.min(...conflicting.map((r) => r.s));
          const holder = got.status === 'denied' ? tableRuns({ locks: () => [got.holder] } as unknown as LockTable)[0] : undefined;
          assert.ok(holder && conflicting.some((r) => r.s === low && runKey(r) === runKey(holder)), `holder of ${step}`);
        }
        break;
      }
      case 'cancel': {
        const blocks = m.queues.flat();
        const b = c.exact && blocks.length ? blocks[c.pick % blocks.length] : undefined;
        const [o, f, s, e, x] = b ? [b.o, b.f, b.s, b.e, b.x] : [c.o, c.f, c.s, endOf(c.s, c.len), c.x];
        const l = e === SIZE - 1 ? 0 : e - s + 1;
        assert.equal(t.cancel(request(o, f, s, l, x)), m.cancel(o, f, s, e, x), step);
        break;
      }
      case 'dropAddr':
        assert.deepEqual(t.dropByServerAddress(ADDRS[c.a]), m.drop((_o, a) => a === c.a), step);
        break;
      case 'dropHost':
        assert.deepEqual(t.dropByHost(HOSTS[c.h]), m.drop((o) => hostOf(o) === c.h), step);
        break;
      case 'dropExport':
        assert.deepEqual(t.dropByExport(exportOf(FILES[c.f])), m.drop((_o, _a, f) => f === c.f), step);
        break;
    }
    checkStep(t, m, grants, step);
  });
}

describe('locks: model-based property', () => {
  afterEach(() => {
    BASE = 0n;
  });
  it('agrees with a byte-map model on random sequences, invariants after every step', function () {
    this.timeout(60_000);
    fc.assert(
      fc.property(fc.array(cmd, { minLength: 1, maxLength: 80, size: 'max' }), (cmds) => runCommands(cmds)),
      { numRuns: 400 },
    );
  });
  it('agrees too when the ranges straddle 2^53 (numbers below, bigints above)', function () {
    this.timeout(60_000);
    BASE = (1n << 53n) - 12n;
    fc.assert(
      fc.property(fc.array(cmd, { minLength: 1, maxLength: 80, size: 'max' }), (cmds) => runCommands(cmds)),
      { numRuns: 150 },
    );
  });
});
