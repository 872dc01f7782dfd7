import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { decodeEvent, EVENT_LAYOUT, EVENT_SIZE, EVENT_VERSION, ProbeEventError } from '../../src/watch';
import { hasCommand } from '../support/netns';

describe('bpf: event layout', () => {
  it('matches struct lockdrop_event in bpf/event.h (offsetof and sizeof from a compiled C program)', function () {
    if (!hasCommand('cc')) this.skip();
    const dir = mkdtempSync(join(tmpdir(), 'ld-layout-'));
    try {
      const fields = Object.keys(EVENT_LAYOUT);
      writeFileSync(join(dir, 'layout.c'), `#include <stdio.h>
#include <stddef.h>
#include <linux/types.h>
#include "event.h"
#define F(f) printf("\\"%s\\":{\\"offset\\":%zu,\\"size\\":%zu},", #f, offsetof(struct lockdrop_event, f), sizeof(((struct lockdrop_event *)0)->f));
int main(void) {
  printf("{");
  ${fields.map((f) => `F(${f})`).join('\n  ')}
  printf("\\"__sizeof\\":%zu,\\"__version\\":%d}", sizeof(struct lockdrop_event), LOCKDROP_EVENT_VERSION);
  return 0;
}
`);
      execFileSync('cc', ['-I', resolve(__dirname, '../../bpf'), '-o', join(dir, 'layout'), join(dir, 'layout.c')]);
      const c = JSON.parse(execFileSync(join(dir, 'layout'), { encoding: 'utf8' }));
      const { __sizeof: sizeof, __version: version, ...layout } = c;
      assert.deepEqual(layout, EVENT_LAYOUT);
      assert.equal(sizeof, EVENT_SIZE);
      assert.equal(version, EVENT_VERSION);
      // No field of the C struct is missing from the TypeScript layout: the fields tile the struct.
      const covered = Object.values(EVENT_LAYOUT).reduce((n, f) => n + f.size, 0);
      assert.equal(covered, EVENT_SIZE);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('decodes a record and refuses short records, other versions and unknown kinds with ProbeEventError', () => {
    const r = Buffer.alloc(EVENT_SIZE);
    r.writeUInt16LE(EVENT_VERSION, 0);
    r.writeUInt16LE(1, 2);
    r.writeUInt32LE(41, 4);
    r.writeUInt32LE(42, 8);
    r.write('ip', 24);
    r[40] = 10;
    r[41] = 64;
    r.writeUInt16LE(21, 42);
    Buffer.from('fd000000000000000000000000000001', 'hex').copy(r, 56);
    const e = decodeEvent(r);
    assert.deepEqual([e.kind, e.tid, e.pid, e.comm, e.family, e.prefixLen, e.address], ['intent', 41, 42, 'ip', 6, 64, 'fd00::1']);
    assert.throws(() => decodeEvent(r.subarray(0, 40)), ProbeEventError);
    const v2 = Buffer.from(r);
    v2.writeUInt16LE(2, 0);
    assert.throws(() => decodeEvent(v2), ProbeEventError);
    const k = Buffer.from(r);
    k.writeUInt16LE(9, 2);
    assert.throws(() => decodeEvent(k), ProbeEventError);
  });
});
