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

  /** Each line of the story, told in this order. */
  const tells = (stdout: string, story: RegExp[]): void => {
    let from = 0;
    for (const line of story) {
      const m = line.exec(stdout.slice(from));
      assert.ok(m, `the demo did not tell ${line} after:\n${stdout.slice(from, from + 400)}…\nits whole output:\n${stdout}`);
      from += m.index + m[0].length;
    }
  };

  it('fails an address over with the story it tells: its locks kept for their owner while it moves, its grace over once they are reclaimed; leaves nothing behind', async () => {
    const before = sh('ip', ['netns', 'list']);
    const earlier = new Set(labProcesses());
    const { stdout } = await run(process.execPath, [path.join(REPO, 'bin', 'lockdrop'), 'demo', '--locks', '12', '--grace', '30'], { timeout: 170_000 });
    tells(stdout, [
      /10\.77\.0\.100 removed by ip\[\d+\]: dropped 12 locks of 1 client in [\d.]+ ms/,
      /srv locks per address: 10\.77\.0\.100 absent +0 locks \(journal 12\)/,
      /c2 meanwhile takes a new lock through 10\.77\.0\.101: granted/,
      /c2 asks through 10\.77\.0\.101 for bytes 0-99 of c1's file while 10\.77\.0\.100 is between nodes: denied_grace_period in \d+ ms — kept for c1's reclaim/,
      /c1 got SM_NOTIFY from 10\.77\.0\.100/,
      /c1 reclaimed 12 of 12 locks on the takeover node/,
      /10\.77\.0\.100's grace ended by itself \d+ ms after the address was added, not at its 30 s deadline/,
      /a new \(non-reclaim\) lock through 10\.77\.0\.100, its grace over: granted in \d+ ms, no waiting for a deadline; through 10\.77\.0\.101: granted/,
      /done: nothing left behind/,
    ]);
    // The takeover node's own line (its log, not in the story's order: it may come before c1 hears its answers).
    const ended = /tko│ grace of 10\.77\.0\.100 ended: 12 of 12 locks reclaimed by 1 host in ([\d.]+) s/.exec(stdout);
    assert.ok(ended, 'the takeover node says the grace ended by itself');
    assert.ok(Number(ended[1]) < 10, `ended ${ended[1]} s after the arrival, long before the 30 s deadline`);
    assert.equal(sh('ip', ['netns', 'list']), before, 'no namespace left');
    assert.deepEqual(labProcesses().filter((p) => !earlier.has(p)), [], 'no process left');
  });

  it('--active-active: two nodes over one directory and one state directory; B\'s waiter is not let in when A drops, only once c1 has reclaimed on B and let go', async () => {
    const before = sh('ip', ['netns', 'list']);
    const earlier = new Set(labProcesses());
    // A GRANTED to c2 before c1's unlock fails the scene: the demo exits non-zero, and run() throws.
    const { stdout } = await run(process.execPath, [path.join(REPO, 'bin', 'lockdrop'), 'demo', '--active-active'], { timeout: 120_000 });
    tells(stdout, [
      /c1 locks bytes 0-99 of data through node A \(10\.77\.0\.100\): granted/,
      /c2 asks node B \(10\.77\.0\.101\) for bytes 50-59: denied/,
      /c2 TESTs bytes 0-99 through node B: denied, held by svid 0 \(outside node B\) over bytes 0-99/,
      /c2 queues a blocking lock on bytes 0-99 through node B: blocked/,
      /10\.77\.0\.100 removed by ip\[\d+\]: dropped 1 lock of 1 client/,
      /node A let go of the file \d+ ms after the removal began; 1000 ms later c2 still waits: node B does not grant it — 10\.77\.0\.100's journal keeps c1's lock/,
      /node B locks per address: 10\.77\.0\.100 absent +0 locks \(journal 1\)/,
      /c1 got SM_NOTIFY from 10\.77\.0\.100 \(state \d+\) \d+ ms after the address was added to node B/,
      /c1 reclaimed 1 of 1 lock on node B/,
      /10\.77\.0\.100's grace on node B ended by itself \d+ ms after the address was added/,
      /node B locks per address: 10\.77\.0\.100 present +1 lock\b/,
      /c1 unlocks bytes 0-99 through 10\.77\.0\.100 \(now on node B\): UNLOCK granted/,
      /c2 got GRANTED from node B \(10\.77\.0\.101\) for bytes 0-99 \d+ ms after c1's unlock/,
      /node B locks per address: 10\.77\.0\.100 present +0 locks \| 10\.77\.0\.101 present +1 lock\b/,
      /done: nothing left behind/,
    ]);
    assert.match(stdout, /nodeB│ grace of 10\.77\.0\.100 ended: 1 of 1 lock reclaimed by 1 host in [\d.]+ s/);
    assert.equal(sh('ip', ['netns', 'list']), before, 'no namespace left');
    assert.deepEqual(labProcesses().filter((p) => !earlier.has(p)), [], 'no process left');
  });
});
