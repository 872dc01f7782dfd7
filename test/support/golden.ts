// Golden-byte fixtures for the NLM and NSM codecs (test/fixtures/nlm, test/fixtures/nsm): the
// procedure arguments and results cut out of a real capture, each field on its own line with
// tshark's dissection of it as the comment. The recorders write them; the tests read them.
//
// A fixture file is sections:
//   ## <key> (frame N)
//   <hex bytes>   # <what tshark says the field is>
// where <key> is "<PROCEDURE> call|reply[ <stat>]" and N the frame of the capture the bytes are from.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { hasCommand } from './netns';

export interface FixtureSection {
  key: string;
  frame: number;
  bytes: Buffer;
}

/** The sections of a fixture file, by key, in file order. */
export function parseFixtures(text: string): Map<string, FixtureSection> {
  const out = new Map<string, FixtureSection>();
  let current: { key: string; frame: number; hex: string[] } | undefined;
  const close = (): void => {
    if (!current) return;
    if (out.has(current.key)) throw new Error(`fixture section "${current.key}" twice`);
    out.set(current.key, { key: current.key, frame: current.frame, bytes: Buffer.from(current.hex.join(''), 'hex') });
  };
  for (const [i, line] of text.split('\n').entries()) {
    const head = /^## (.+) \(frame (\d+)\)$/.exec(line);
    if (head) {
      close();
      current = { key: head[1]!, frame: Number(head[2]), hex: [] };
      continue;
    }
    const data = line.replace(/#.*$/, '').replace(/\s+/g, '');
    if (data === '') continue;
    if (!current || !/^([0-9a-f]{2})+$/.test(data)) throw new Error(`fixture line ${i + 1}: not hex bytes in a section: ${line}`);
    current.hex.push(data);
  }
  close();
  return out;
}

// ---- captures ----

/** The frames of a classic pcap file (what `dumpcap -P` writes), frame 1 first. */
export function pcapFrames(file: string): Buffer[] {
  const b = readFileSync(file);
  if (b.readUInt32LE(0) !== 0xa1b2c3d4) throw new Error(`${file}: not a little-endian microsecond pcap`);
  const frames: Buffer[] = [];
  for (let at = 24; at < b.length;) {
    const len = b.readUInt32LE(at + 8);
    frames.push(b.subarray(at + 16, at + 16 + len));
    at += 16 + len;
  }
  return frames;
}

/** One node of tshark's PDML: a protocol or a field. */
export interface PdmlNode {
  name: string;
  showname: string;
  show: string;
  pos: number;
  size: number;
  hidden: boolean;
  children: PdmlNode[];
}

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
const unescape = (s: string): string =>
  s.replace(/&(#x[0-9a-fA-F]+|#\d+|\w+);/g, (m, e: string) =>
    e.startsWith('#x') ? String.fromCodePoint(parseInt(e.slice(2), 16)) : e.startsWith('#') ? String.fromCodePoint(Number(e.slice(1))) : ENTITIES[e] ?? m);

/** Every packet of the capture as tshark dissects it: its protocol nodes (PDML, one element per line). */
export function dissect(file: string): PdmlNode[][] {
  const xml = execFileSync('tshark', ['-r', file, '-T', 'pdml'], { encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'ignore'] });
  const packets: PdmlNode[][] = [];
  const stack: PdmlNode[] = [];
  for (const line of xml.split('\n')) {
    const t = line.trim();
    if (t === '<packet>') packets.push([]);
    else if (t === '</field>' || t === '</proto>') stack.pop();
    else {
      const m = /^<(proto|field)\s(.*?)(\/?)>$/.exec(t);
      if (!m) continue;
      const attrs: Record<string, string> = {};
      for (const a of m[2]!.matchAll(/(\w+)="([^"]*)"/g)) attrs[a[1]!] = unescape(a[2]!);
      const node: PdmlNode = {
        name: attrs.name ?? '', showname: attrs.showname ?? attrs.show ?? '', show: attrs.show ?? '',
        pos: Number(attrs.pos ?? 0), size: Number(attrs.size ?? 0), hidden: attrs.hide === 'yes', children: [],
      };
      if (stack.length > 0) stack.at(-1)!.children.push(node);
      else packets.at(-1)!.push(node);
      if (m[3] !== '/') stack.push(node);
    }
  }
  return packets;
}

export const find = (nodes: PdmlNode[], name: string): PdmlNode | undefined => {
  for (const n of nodes) {
    if (n.name === name) return n;
    const deeper = find(n.children, name);
    if (deeper) return deeper;
  }
  return undefined;
};

/** Every node's name in the tree (expert infos and malformed marks are `_ws.*`). */
export const names = (nodes: PdmlNode[]): string[] => nodes.flatMap((n) => [n.name, ...names(n.children)]);

/** The RPC facts of a dissected packet: call or reply, program, version, procedure. */
export function rpcOf(packet: PdmlNode[]): { call: boolean; prog: number; vers: number; proc: number } | undefined {
  const rpc = packet.find((p) => p.name === 'rpc');
  const num = (n: string): number => Number(find(rpc ? [rpc] : [], n)?.show);
  if (!rpc) return undefined;
  return { call: num('rpc.msgtyp') === 0, prog: num('rpc.program'), vers: num('rpc.programversion'), proc: num('rpc.procedure') };
}

// ---- annotation ----

const label = (n: PdmlNode): string => {
  const s = n.showname || n.show;
  // A container's label is its field name ("caller_name: cli" → "caller_name").
  return n.children.length > 0 ? s.replace(/:.*$/, '') : s;
};

const shown = (nodes: PdmlNode[]): PdmlNode[] => nodes.filter((c) => c.size > 0 && !c.hidden);
const hex = (b: Buffer): string => (b.toString('hex').match(/.{1,8}/g) ?? []).join(' ');

/**
 * One line per field: its bytes, then what tshark calls it (with the enclosing fields' names).
 * The fields are the dissection's leaves, which must tile the node's bytes exactly; tshark's
 * containers may claim more bytes than they hold (its NLM "lock" does), so only leaves count.
 * Where two leaves cover the same bytes (a handle's hash and its bytes) the last one is kept.
 */
export function annotate(frame: Buffer, node: PdmlNode): string[] {
  const leaves: { n: PdmlNode; path: string[] }[] = [];
  const walk = (n: PdmlNode, path: string[]): void => {
    const kids = shown(n.children);
    if (kids.length === 0) {
      const last = leaves.at(-1);
      if (last && last.n.pos === n.pos && last.n.size === n.size) leaves.pop();
      leaves.push({ n, path });
      return;
    }
    for (const c of kids) walk(c, shown(c.children).length > 0 ? [...path, label(c)] : path);
  };
  for (const c of shown(node.children)) walk(c, shown(c.children).length > 0 ? [label(c)] : []);
  let at = node.pos;
  for (const { n } of leaves) {
    if (n.pos !== at) throw new Error(`tshark's fields do not tile ${node.name} at byte ${at} (next field at ${n.pos}: ${n.showname})`);
    at += n.size;
  }
  if (at !== node.pos + node.size) throw new Error(`tshark's fields cover ${at - node.pos} of ${node.size} bytes of ${node.name}`);
  const lines = leaves.map(({ n, path }) => [hex(frame.subarray(n.pos, n.pos + n.size)), [...path, label(n)].join(': ')] as const);
  const width = Math.max(...lines.map(([h]) => h.length));
  return lines.map(([h, what]) => `${h.padEnd(width)}  # ${what}`);
}

/**
 * Annotates XDR bytes tshark does not dissect (Linux's private NLM procedure 16 and statd's status
 * callback) by a layout: strings (length, contents, fill) and 4-byte integers, and fixed opaques.
 */
export function annotateLayout(bytes: Buffer, layout: XdrLayout, why: string): string[] {
  const lines: [string, string][] = [];
  let at = 0;
  for (const [name, kind] of layout) {
    if (kind === 'string') {
      const len = bytes.readUInt32BE(at);
      const pad = (4 - (len % 4)) % 4;
      lines.push([hex(bytes.subarray(at, at + 4)), `${name}: length: ${len}`]);
      lines.push([hex(bytes.subarray(at + 4, at + 4 + len)), `${name}: contents: ${bytes.subarray(at + 4, at + 4 + len).toString('latin1')}`]);
      if (pad) lines.push([hex(bytes.subarray(at + 4 + len, at + 4 + len + pad)), `${name}: fill bytes`]);
      at += 4 + len + pad;
    } else if (kind === 'int') {
      lines.push([hex(bytes.subarray(at, at + 4)), `${name}: ${bytes.readInt32BE(at)}`]);
      at += 4;
    } else {
      lines.push([hex(bytes.subarray(at, at + kind.fixed)), `${name}: ${kind.fixed} bytes`]);
      at += kind.fixed;
    }
  }
  if (at !== bytes.length) throw new Error(`layout covers ${at} of ${bytes.length} bytes`);
  const width = Math.max(...lines.map(([h]) => h.length));
  return [`# ${why}`, ...lines.map(([h, what]) => `${h.padEnd(width)}  # ${what}`)];
}

// ---- recording ----

/**
 * Re-runs the calling script as root in a private network namespace with its own /run
 * (rpcbind's socket), as scripts/mocha-ns.sh does for tests; returns false when already there.
 */
export function reexecInNamespace(script: string): boolean {
  if (process.env.LOCKDROP_TEST_NS === '1') return false;
  const r = spawnSync('unshare', ['--net', '--mount', '--propagation', 'private', '--', 'sh', '-ec',
    'mount -t tmpfs golden-run /run; mkdir -p /run/lock; ip link set lo up; exec env LOCKDROP_TEST_NS=1 "$@"',
    'sh', process.execPath, ...process.execArgv, script, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

/** dumpcap on lo into a classic pcap file; resolves once it captures. */
export async function startCapture(file: string, filter: string): Promise<{ stop(): Promise<void> }> {
  const capture = spawn('dumpcap', ['-q', '-P', '-i', 'lo', '-w', file, '-f', filter], { stdio: ['ignore', 'ignore', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    let err = '';
    capture.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('Capturing on')) resolve();
    });
    capture.once('exit', () => reject(new Error(`dumpcap: ${err}`)));
  });
  return {
    stop: async () => {
      capture.kill('SIGINT');
      await new Promise((resolve) => capture.once('exit', resolve));
    },
  };
}

export type XdrLayout = [string, 'string' | 'int' | { fixed: number }][];

/** Where a packet's fixture goes: its file (group), its key, and the dissected body (absent: void). */
export interface FixtureOf {
  group: string;
  key: string;
  body: PdmlNode | undefined;
}

/**
 * The fixture sections of a capture, per group: the first packet of each key, annotated by
 * tshark's dissection (or by `layout` where tshark shows only data), and the keys that were void.
 */
export function cutFixtures(pcap: string, fixtureOf: (packet: PdmlNode[]) => FixtureOf | undefined, layout: (key: string) => { layout: XdrLayout; why: string }): Map<string, { sections: string[]; empty: string[] }> {
  const frames = pcapFrames(pcap);
  const out = new Map<string, { sections: string[]; empty: string[]; seen: Set<string> }>();
  dissect(pcap).forEach((p, i) => {
    const f = fixtureOf(p);
    if (!f) return;
    let g = out.get(f.group);
    if (!g) out.set(f.group, (g = { sections: [], empty: [], seen: new Set() }));
    if (g.seen.has(f.key)) return;
    g.seen.add(f.key);
    if (!f.body || f.body.size === 0) return void g.empty.push(f.key);
    let lines: string[];
    if (f.body.children.some((n) => n.name === 'data')) {
      const l = layout(f.key);
      lines = annotateLayout(frames[i]!.subarray(f.body.pos, f.body.pos + f.body.size), l.layout, l.why);
    } else {
      lines = annotate(frames[i]!, f.body);
    }
    g.sections.push(`## ${f.key} (frame ${i + 1})`, ...lines, '');
  });
  return out;
}

// ---- checking ----

/** Skips the suite, saying why, when tshark is missing. */
export function requireTshark(ctx: Mocha.Context): void {
  if (hasCommand('tshark')) return;
  console.log('    skipped: tshark is not installed (scripts/setup.sh installs it)');
  ctx.skip();
}

/**
 * Checks a capture against the fixtures cut from it: tshark marks no packet malformed, and each
 * section is its frame's dissected body, byte for byte, with nothing tshark complains about.
 * Returns every fixture key the capture holds ("group key") with its body's size (0: void).
 */
export function verifyCapture(pcap: string, fixtures: Map<string, Map<string, FixtureSection>>, fixtureOf: (packet: PdmlNode[]) => FixtureOf | undefined): Map<string, number> {
  const packets = dissect(pcap);
  const frames = pcapFrames(pcap);
  assert.equal(packets.length, frames.length);
  assert.deepEqual(packets.flatMap((p, i) => (names(p).includes('_ws.malformed') ? [i + 1] : [])), [], 'malformed frames');
  for (const [group, sections] of fixtures) {
    for (const s of sections.values()) {
      const f = fixtureOf(packets[s.frame - 1]!);
      assert.deepEqual([f?.group, f?.key], [group, s.key], `frame ${s.frame}`);
      const body = f!.body;
      assert.ok(body && !names([body]).some((n) => n.startsWith('_ws.')), `frame ${s.frame}: tshark complains`);
      assert.equal(frames[s.frame - 1]!.subarray(body.pos, body.pos + body.size).toString('hex'), s.bytes.toString('hex'), `frame ${s.frame}`);
    }
  }
  const seen = new Map<string, number>();
  for (const p of packets) {
    const f = fixtureOf(p);
    if (f) seen.set(`${f.group} ${f.key}`, Math.max(seen.get(`${f.group} ${f.key}`) ?? 0, f.body?.size ?? 0));
  }
  return seen;
}
