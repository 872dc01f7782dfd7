// The wait for an outside holder when every kernel wait thread is busy: the files part tries the
// lock again on a backoff (exactly pollInitialMs first, then growing, jittered, capped at
// pollMaxMs) and acquires it once the holder lets go; cancelling stops the tries.
import assert from 'node:assert/strict';
import { ExportsTable } from '../../src/exports';
import { ExportedFiles } from '../../src/files';
import { nativeFileSyscalls } from '../../src/files/native';
import { E, type FileSyscalls } from '../../src/files/syscalls';
import { localLock, releaseLocalLocks } from '../support/local-locker';
import { requireNamespaceRoot } from '../support/netns';
import { waitFor } from '../support/wait';
import { knfsdHandle, makeFile, mountTmpfs, type Mounted } from './support';

describe('files: the poll fallback when the kernel wait pool is full', function () {
  this.timeout(20_000);
  let fs: Mounted | undefined;
  let files: ExportedFiles | undefined;
  /** When each lock attempt was made (ms since the wait began). */
  let tries: number[];
  let started: number;

  beforeEach(function () {
    requireNamespaceRoot(this);
    fs = mountTmpfs();
    tries = [];
    // The real system calls, except that the wait pool is always full.
    const sys: FileSyscalls = {
      ...nativeFileSyscalls,
      ofdWait: () => -E.EBUSY,
      ofdSetLock: (...a) => {
        tries.push(performance.now() - started);
        return nativeFileSyscalls.ofdSetLock(...a);
      },
    };
    const exports = new ExportsTable([{ path: fs.dir, fsid: 7, clients: [], secure: false, fileLocks: true }]);
    files = new ExportedFiles({ sys, kernelHandle: (fh) => exports.kernelHandle(fh), maxOpen: 100, pollInitialMs: 40, pollMaxMs: 160 });
    files.setExports([{ path: fs.dir, fileLocks: true }]);
  });
  afterEach(async () => {
    await releaseLocalLocks();
    if (files && fs) files.closeExport(fs.dir);
    fs?.dispose();
    fs = files = undefined;
  });

  it('tries again on the backoff while the holder holds, and acquires once it lets go', async () => {
    const path = makeFile(fs!.dir, 'held');
    const fh = knfsdHandle(path, 7);
    const holder = localLock(path, { kind: 'ofd' });
    assert.equal(await holder.outcome, 'locked');
    let acquired: boolean | undefined;
    started = performance.now();
    files!.wait('held', fh, 'owner', 0, Infinity, true, (ok) => (acquired = ok));
    await waitFor('five tries', () => tries.length >= 5);
    assert.equal(acquired, undefined, 'still waiting while the holder holds');
    const gaps = tries.slice(1).map((t, i) => t - tries[i]!);
    // 40 ms exactly (timers are never early), then 80 and 160 (±20 %), then at most the cap.
    assert.ok(tries[0]! >= 39, `first try after ${tries[0]} ms`);
    assert.ok(gaps[0]! >= 0.8 * 80 - 1 && gaps[1]! >= 0.8 * 160 - 1 && gaps[2]! >= 0.8 * 160 - 1, `gaps ${gaps.map((g) => g.toFixed(0))}`);
    assert.ok(gaps.every((g) => g < 160 + 100), `no wait past the cap (plus timer slack): ${gaps.map((g) => g.toFixed(0))}`);
    await holder.release();
    await waitFor('the lock', () => acquired !== undefined);
    assert.equal(acquired, true);
    files!.unlock('held', 'owner', 0, Infinity);
  });

  it('cancelling the wait stops the tries', async () => {
    const path = makeFile(fs!.dir, 'cancelled');
    const holder = localLock(path, { kind: 'ofd' });
    assert.equal(await holder.outcome, 'locked');
    started = performance.now();
    let called = false;
    const cancel = files!.wait('cancelled', knfsdHandle(path, 7), 'owner', 0, Infinity, true, () => (called = true));
    await waitFor('two tries', () => tries.length >= 2);
    cancel();
    const n = tries.length;
    await holder.release();
    // Past the longest wait: a try still scheduled would have run by now.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(tries.length, n);
    assert.equal(called, false);
    files!.close('cancelled', 'owner');
  });
});
