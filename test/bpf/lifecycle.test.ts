import assert from 'node:assert/strict';
import { readdirSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BpfObject, openLockdropProbes, probeObjectPath, u32 } from '../../src/addon';
import { requireNamespaceRoot, sh } from '../support/netns';

const openFds = (): number => readdirSync('/proc/self/fd').length;
/** Our programs loaded in the kernel (bpftool truncates names to 15 characters). */
function ourPrograms(): number {
  const progs = JSON.parse(sh('bpftool', ['-j', 'prog', 'show'])) as Array<{ name?: string }>;
  return progs.filter((p) => p.name && /^(intent_|outcome_|removed_|link_closed)/.test(p.name)).length;
}

describe('bpf: object lifecycle', function () {
  beforeEach(function () {
    requireNamespaceRoot(this);
  });

  // A cycle costs ~0.2 s of kernel time (CO-RE against the kernel's BTF at load, an RCU grace
  // period per tracepoint detach): the 100 cycles use two of the programs, and the full probe set
  // runs a few cycles of its own.
  it('100 open/load/attach/read/close cycles leave no file descriptors or programs behind', function () {
    this.timeout(50000);
    const warm = openLockdropProbes(); // feature probes, tracefs, lazily opened fds
    warm.close();
    const fds = openFds();
    const progs = ourPrograms();
    for (let i = 0; i < 100; i++) {
      const obj = BpfObject.open(probeObjectPath).setReadOnly('target_netns', u32(0));
      for (const p of obj.programs()) if (p.name !== 'intent_sendmsg' && p.name !== 'intent_sendmsg_exit') obj.disable(p.name, 'not in this test');
      const attached = obj.load().attachAll().filter((p) => p.status === 'attached');
      assert.equal(attached.length, 2);
      const sub = obj.ringBuffer('events').subscribe();
      if (i % 2) sub.unsubscribe(); // both orders: reader closed first, or by close()
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
