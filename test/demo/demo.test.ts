// The README's main command, end to end: `lockdrop demo` as a user runs it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { requireNamespaceRoot, sh } from '../support/netns';

const run = promisify(execFile);
const REPO = path.resolve(__dirname, '..', '..');

describe('lockdrop demo', function () {
  this.timeout(180_000);
  before(function () { requireNamespaceRoot(this); });

  // Other test runs on this machine may have their own rpcbind: only new ones count, and only
  // orphans (a process the demo left outlives it and is reparented to init; another run's lab
  // processes still have their parent).
  const labProcesses = (): string[] => sh('ps', ['-eo', 'pid=,ppid=,args=']).split('\n')
    .filter((l) => /^\s*\d+\s+1\s/.test(l) && /lockdrop-demo-|client-host\.js|rpcbind -f -w/.test(l));

  it('fails an address over with the story it tells, and leaves no namespace, process or address behind', async () => {
    const before = sh('ip', ['netns', 'list']);
    const earlier = new Set(labProcesses());
    const { stdout } = await run(process.execPath, [path.join(REPO, 'bin', 'lockdrop'), 'demo', '--locks', '12', '--grace', '30'], { timeout: 170_000 });
    assert.match(stdout, /10\.77\.0\.100 removed by ip\[\d+\]: dropped 12 locks of 1 client in [\d.]+ ms/);
    assert.match(stdout, /c2 meanwhile takes a new lock through 10\.77\.0\.101: granted/);
    assert.match(stdout, /c1 got SM_NOTIFY from 10\.77\.0\.100/);
    assert.match(stdout, /c1 reclaimed 12 of 12 locks on the takeover node/);
    assert.match(stdout, /through 10\.77\.0\.100 during its grace: denied_grace_period; through 10\.77\.0\.101: granted/);
    assert.match(stdout, /done: nothing left behind/);
    assert.equal(sh('ip', ['netns', 'list']), before, 'no namespace left');
    assert.deepEqual(labProcesses().filter((p) => !earlier.has(p)), [], 'no process left');
  });

  it('--active-active: two nodes over one directory see each other\'s locks on the file; a drop on A lets B\'s waiter in', async () => {
    const before = sh('ip', ['netns', 'list']);
    const earlier = new Set(labProcesses());
    const { stdout } = await run(process.execPath, [path.join(REPO, 'bin', 'lockdrop'), 'demo', '--active-active'], { timeout: 120_000 });
    assert.match(stdout, /c1 locks bytes 0-99 of data through node A \(10\.77\.0\.100\): granted/);
    assert.match(stdout, /c2 asks node B \(10\.77\.0\.101\) for bytes 50-59: denied/);
    assert.match(stdout, /c2 TESTs bytes 0-99 through node B: denied, held by svid 0 \(outside node B\) over bytes 0-99/);
    assert.match(stdout, /c2 queues a blocking lock on bytes 0-99 through node B: blocked/);
    assert.match(stdout, /10\.77\.0\.100 removed by ip\[\d+\]: dropped 1 lock of 1 client/);
    assert.match(stdout, /c2 got GRANTED from node B \(10\.77\.0\.101\) for bytes 0-99/);
    assert.match(stdout, /node B locks per address: 10\.77\.0\.101 present +1 lock\b/);
    assert.match(stdout, /done: nothing left behind/);
    assert.equal(sh('ip', ['netns', 'list']), before, 'no namespace left');
    assert.deepEqual(labProcesses().filter((p) => !earlier.has(p)), [], 'no process left');
  });
});
