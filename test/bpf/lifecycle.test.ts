import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { firstValueFrom } from 'rxjs';
import { BpfObject, openLockdropProbes, probeObjectPath, u32 } from '../../src/addon';
import { requireNamespaceRoot, sh } from '../support/netns';

const selftestPath = join(dirname(probeObjectPath), 'selftest.bpf.o');
/**
 * Open anonymous-inode file descriptors and what they are: BPF programs, maps and links, perf
 * events, epoll sets (what the loader creates). Files and pipes are left out: tsx and mocha open
 * and close their own lazily. The diff explains a leak.
 */
const openFds = (): string[] => readdirSync('/proc/self/fd').flatMap((fd) => {
  try {
    const target = readlinkSync(`/proc/self/fd/${fd}`);
    return target.startsWith('anon_inode:') ? [`${fd} ${target}`] : [];
  } catch {
    return []; // the directory's own fd, gone by now
  }
});
/** Ids of the BPF programs and maps this process holds open now (from /proc/self/fdinfo). */
function heldObjects(): { progs: number[]; maps: number[] } {
  const out = { progs: [] as number[], maps: [] as number[] };
  for (const fd of readdirSync('/proc/self/fdinfo')) {
    try {
      const info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
      const prog = /^prog_id:\s*(\d+)/m.exec(info);
      const map = /^map_id:\s*(\d+)/m.exec(info);
      if (prog) out.progs.push(Number(prog[1]));
      else if (map) out.maps.push(Number(map[1]));
    } catch {
      // closed meanwhile
    }
  }
  return out;
}
/** Which of these ids the kernel still has (other processes' objects do not count). */
function loadedNow(ids: { progs: Set<number>; maps: Set<number> }): number[] {
  const progs = (JSON.parse(sh('bpftool', ['-j', 'prog', 'show'])) as Array<{ id: number }>).map((p) => p.id).filter((id) => ids.progs.has(id));
  const maps = (JSON.parse(sh('bpftool', ['-j', 'map', 'show'])) as Array<{ id: number }>).map((m) => m.id).filter((id) => ids.maps.has(id));
  return [...progs, ...maps];
}
/**
 * The ids still loaded once the kernel has had up to `ms` to free them: it frees programs and maps
 * asynchronously after their last fd closes, so `bpftool` may list them for a moment. An id that
 * stays past the bound is a leak.
 */
async function stillLoaded(ids: { progs: Set<number>; maps: Set<number> }, ms = 2000): Promise<number[]> {
  const until = Date.now() + ms;
  for (;;) {
    const left = loadedNow(ids);
    if (left.length === 0 || Date.now() >= until) return left;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('bpf: object lifecycle', function () {
  beforeEach(function () {
    requireNamespaceRoot(this);
  });

  // The loader's own cycles use bpf/selftest.bpf.c (no CO-RE: loading lockdrop's probes costs
  // ~0.2 s of kernel BTF work each time); lockdrop's probes run a few full cycles too.
  it('100 open/configure/load/attach/read/close cycles leave no file descriptors or programs behind', async function () {
    this.timeout(40000);
    const warm = openLockdropProbes(); // feature probes, tracefs, lazily opened fds
    warm.close();
    const fds = openFds();
    const seen = { progs: new Set<number>(), maps: new Set<number>() };
    const note = (): void => {
      const held = heldObjects();
      held.progs.forEach((id) => seen.progs.add(id));
      held.maps.forEach((id) => seen.maps.add(id));
    };
    for (let i = 0; i < 100; i++) {
      const obj = BpfObject.open(selftestPath).setReadOnly('target_tgid', u32(process.pid));
      assert.deepEqual(obj.load().attachAll().map((p) => `${p.name} ${p.status}`), ['on_kill attached']);
      const record = firstValueFrom(obj.ringBuffer('records'));
      process.kill(process.pid, 0);
      const r = await record; // the first subscription completes and closes its reader
      assert.deepEqual([r.readUInt32LE(0), r.readUInt32LE(4), r.readUInt32LE(8)], [process.pid, process.pid, 0]);
      if (i % 2) obj.ringBuffer('records').subscribe(); // left open: close() must release it
      note();
      obj.close();
    }
    for (let i = 0; i < 5; i++) {
      const p = openLockdropProbes();
      p.records$.subscribe();
      note();
      p.close();
    }
    assert.deepEqual(openFds(), fds);
    assert.ok(seen.progs.size >= 100 + 5 * 8 && seen.maps.size >= 100, 'ids of what was loaded');
    assert.deepEqual(await stillLoaded(seen), []);
  });

  it('reports bad objects and bad configuration as errors, not crashes', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ld-bpf-'));
    try {
      const junk = join(dir, 'junk.o');
      writeFileSync(junk, 'not an ELF file');
      assert.throws(() => BpfObject.open(junk), /bpf_object__open_file/);
      assert.throws(() => BpfObject.open(join(dir, 'missing.o')), /ENOENT/);
      const obj = BpfObject.open(probeObjectPath);
      assert.throws(() => obj.setReadOnly('target_netns', Buffer.alloc(2)), /expected 4 bytes/);
      assert.throws(() => obj.setReadOnly('no_such_variable', u32(1)), /ENOENT/);
      assert.throws(() => obj.attachAll(), /needs a loaded object \(this one is opened\)/);
      assert.throws(() => obj.readGlobal('no_such_variable'), /ENOENT/);
      assert.throws(() => obj.setMaxEntries('no_such_map', 4096), /ENOENT/);
      assert.equal(obj.readGlobal('lost_events').length, 8);
      obj.close();
      obj.close();
      assert.throws(() => obj.programs(), /closed/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
