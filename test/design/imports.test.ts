// DESIGN.md's rule on dependencies, checked on src/ as it stands: they point one way, from cli and
// daemon down to xdr, locks and the addon, and nothing imports back up; nsm never imports nlm or
// locks, watch never imports locks, locks and net import nothing. And no file imports itself
// round a circle. Type-only imports count: a circle of types still ties the files' order (the
// nlm service's handlers ↔ service ↔ procedures was one).
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

const SRC = path.resolve(__dirname, '../../src');

/**
 * The parts from the bottom floor up (DESIGN.md's table, README's layout): a part imports only
 * parts on a lower floor. A new folder of src/ fails the test until it is given its floor.
 */
const FLOORS: Readonly<Record<string, number>> = {
  net: 0,
  xdr: 1, locks: 1, addon: 1,
  rpc: 2, exports: 2, store: 2,
  nlm: 3, nsm: 3, watch: 3, files: 3, control: 3,
  failover: 4,
  daemon: 5,
  demo: 6,
  cli: 7,
};

/** What a part never imports, whatever the floors allow ('*': no other part at all). */
const NEVER: Readonly<Record<string, readonly string[]>> = {
  net: ['*'],
  locks: ['*'],
  nsm: ['nlm', 'locks'],
  watch: ['locks'],
  // The cluster store keeps opaque values per address: what a lock is, the table says.
  store: ['locks'],
};

/** File → the files of src/ it imports, both as paths relative to src/ ('nlm/service.ts'). */
type ImportGraph = Map<string, Set<string>>;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

/** The file a relative specifier names, as Node and tsc resolve it. */
function resolveImport(from: string, spec: string): string {
  const base = path.resolve(path.dirname(from), spec);
  const found = [base, `${base}.ts`, path.join(base, 'index.ts')].find((p) => existsSync(p) && statSync(p).isFile());
  if (!found) throw new Error(`${path.relative(SRC, from)}: cannot resolve '${spec}'`);
  return found;
}

/** Every relative import, export … from, import type, import() and require() of src/ that lands in src/. */
function importGraph(root: string): ImportGraph {
  const graph: ImportGraph = new Map();
  for (const file of sourceFiles(root)) {
    const imported = ts.preProcessFile(readFileSync(file, 'utf8'), true, true).importedFiles;
    const targets = new Set<string>();
    for (const { fileName } of imported) {
      if (!fileName.startsWith('.')) continue; // a package or node: builtin
      const target = resolveImport(file, fileName);
      if (target.startsWith(root + path.sep) && target.endsWith('.ts')) targets.add(path.relative(root, target));
    }
    graph.set(path.relative(root, file), targets);
  }
  return graph;
}

const partOf = (file: string): string => file.split('/')[0]!;

/** One circle per strongly connected group of files (Tarjan), as the files met going round it. */
function importCycles(graph: ImportGraph): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const groups: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) !== index.get(v)) return;
    const group: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      group.push(w);
    } while (w !== v);
    if (group.length > 1 || graph.get(v)?.has(v)) groups.push(group);
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return groups.map((g) => circleThrough(graph, new Set(g)));
}

/** The shortest way from a group's first file (in sorted order) back to itself, inside the group. */
function circleThrough(graph: ImportGraph, group: Set<string>): string[] {
  const start = [...group].sort()[0]!;
  const cameFrom = new Map<string, string>();
  const queue = [start];
  for (let i = 0; i < queue.length; i++) {
    const v = queue[i]!;
    for (const w of graph.get(v) ?? []) {
      if (!group.has(w)) continue;
      if (w === start) {
        const circle = [v];
        while (circle[0] !== start) circle.unshift(cameFrom.get(circle[0]!)!);
        return [...circle, start];
      }
      if (!cameFrom.has(w)) {
        cameFrom.set(w, v);
        queue.push(w);
      }
    }
  }
  throw new Error(`no circle through ${start}`);
}

/** Every import that breaks the parts order or a NEVER rule, said as a sentence. */
function upwardImports(graph: ImportGraph): string[] {
  const broken: string[] = [];
  for (const [file, targets] of graph) {
    const from = partOf(file);
    if (!file.includes('/')) {
      broken.push(`src/${file} belongs to no part (a file of src/ lives in a part's folder)`);
      continue;
    }
    if (FLOORS[from] === undefined) {
      broken.push(`src/${from} has no floor in the parts order: give it one (DESIGN.md's parts)`);
      continue;
    }
    for (const target of targets) {
      const to = partOf(target);
      if (to === from) continue;
      const never = NEVER[from] ?? [];
      if (never.includes('*') || never.includes(to)) {
        broken.push(`src/${file} imports src/${target}: ${from} never imports ${never.includes('*') ? 'another part' : to}`);
      } else if (FLOORS[to] === undefined || FLOORS[to]! >= FLOORS[from]!) {
        broken.push(`src/${file} imports src/${target}: ${from} (floor ${FLOORS[from]}) imports only parts below it, ${to} is on floor ${FLOORS[to] ?? 'none'}`);
      }
    }
  }
  return broken;
}

describe('design: the import graph of src/', () => {
  const graph = importGraph(SRC);

  it('is read whole: every file, every part, the imports between parts', () => {
    // Guards the two checks below against passing on a graph the reader failed to fill.
    assert.ok(graph.size >= 100, `${graph.size} files`);
    const parts = readdirSync(SRC, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    assert.deepEqual(parts.filter((p) => FLOORS[p] === undefined), [], 'every folder of src/ has its floor');
    assert.deepEqual(Object.keys(FLOORS).filter((p) => !parts.includes(p)), [], 'every floor names a folder of src/');
    const crossing = new Set([...graph].flatMap(([f, targets]) => [...targets].map((t) => `${partOf(f)} → ${partOf(t)}`)));
    for (const edge of ['daemon → locks', 'nlm → rpc', 'rpc → xdr', 'watch → net', 'failover → watch']) assert.ok(crossing.has(edge), edge);
    assert.ok(graph.get('nlm/service.ts')?.has('nlm/handlers.ts'), 'imports inside a part are read too');
  });

  it('has no import cycle', () => {
    assert.deepEqual(importCycles(graph).map((c) => c.join(' → ')), []);
  });

  it('has no import that runs back up the parts order', () => {
    assert.deepEqual(upwardImports(graph), []);
  });

  it('the checks find a circle, an upward import and a NEVER rule broken', () => {
    const g: ImportGraph = new Map([
      ['nlm/a.ts', new Set(['nlm/b.ts'])],
      ['nlm/b.ts', new Set(['nlm/c.ts'])],
      ['nlm/c.ts', new Set(['nlm/a.ts', 'nlm/b.ts'])],
      ['rpc/x.ts', new Set(['rpc/x.ts', 'nlm/a.ts'])],
      ['nsm/m.ts', new Set(['locks/types.ts', 'rpc/x.ts'])],
      ['locks/types.ts', new Set(['net/index.ts'])],
      ['net/index.ts', new Set<string>()],
      ['cluster/y.ts', new Set(['net/index.ts'])],
    ]);
    assert.deepEqual(importCycles(g).map((c) => c.join(' → ')).sort(), ['nlm/a.ts → nlm/b.ts → nlm/c.ts → nlm/a.ts', 'rpc/x.ts → rpc/x.ts']);
    assert.deepEqual(upwardImports(g), [
      'src/rpc/x.ts imports src/nlm/a.ts: rpc (floor 2) imports only parts below it, nlm is on floor 3',
      'src/nsm/m.ts imports src/locks/types.ts: nsm never imports locks',
      'src/locks/types.ts imports src/net/index.ts: locks never imports another part',
      'src/cluster has no floor in the parts order: give it one (DESIGN.md\'s parts)',
    ]);
  });
});
