import assert from 'node:assert/strict';
import { readdirSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { firstValueFrom } from 'rxjs';
import { BpfObject, openLockdropProbes, probeObjectPath, u32 } from '../../src/addon';
import { requireNamespaceRoot, sh } from '../support/netns';

const selftestPath = join(dirname(probeObjectPath), 'selftest.bpf.o');
const openFds = (): number => readdirSync('/proc/self/fd').length;
/** Our programs loaded in the kernel (bpftool truncates names to 15 characters). */
function ourPrograms(): number {
  const progs = JSON.parse(sh('bpftool', ['-j', 'prog', 'show'])) as Array<{ name?: string }>;
  return progs.filter((p) => p.name && /^(intent_|outcome_|removed_|link_closed|on_kill)/.test(p.name)).length;
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
    const progs = ourPrograms();
    for (let i = 0; i < 100; i++) {
      const obj = BpfObject.open(selftestPath).setReadOnly('target_tgid', u32(process.pid));
      assert.deepEqual(obj.load().attachAll().map((p) => `${p.name} ${p.status}`), ['on_kill attached']);
      const record = firstValueFrom(obj.ringBuffer('records'));
      process.kill(process.pid, 0);
      const r = await record; // the first subscription completes and closes its reader
      assert.deepEqual([r.readUInt32LE(0), r.readUInt32LE(4), r.readUInt32LE(8)], [process.pid, process.pid, 0]);
      if (i % 2) obj.ringBuffer('records').subscribe(); // left open: close() must release it
      obj.close();
    }
    for (let i = 0; i < 5; i++) {
      const p = openLockdropProbes();
      p.events$.subscribe();
      p.close();
    }
    assert.equal(openFds(), fds);
    assert.equal(ourPrograms(), progs);
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
      assert.throws(() => obj.attachAll(), /before load/);
      obj.close();
      obj.close();
      assert.throws(() => obj.programs(), /closed/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
