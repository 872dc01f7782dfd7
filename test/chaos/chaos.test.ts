// The chaos test of issue 19, short and with a fixed seed: two lockdropd nodes over one shared
// state directory, two floating addresses moved under 16 client hosts and two local processes
// contending for a few ranges of three real files, one lockdropd killed -9 and started again. The
// checker's verdict must be clean: no two holders at once, every lock held at a move reclaimed,
// the kernel's view, lockdropctl's and the clients' agreeing once quiet, no description left open.
// A local process's grant in an address's window (its disruption to its protection on the new
// node) is a window loss: measured and listed, not a violation (README.md here says why).
// `npm run chaos` runs longer ones with any seed (README.md here).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { IPADDR2 } from '../../src/demo/stage';
import { requireNamespaceRoot } from '../support/netns';
import { DEFAULTS, runChaos } from './run';

const SEED = 7;
const SECONDS = 45;

describe('chaos (issue 19): addresses moved and lockdropd killed under contending clients', function () {
  this.timeout((SECONDS + 180) * 1000);

  before(function () {
    requireNamespaceRoot(this);
    if (!existsSync(IPADDR2)) throw new Error(`${IPADDR2} is needed (resource-agents; bash scripts/setup.sh installs it)`);
  });

  it(`seed ${SEED}, ${SECONDS} s: no lock lost or given twice, and every view agrees once quiet`, async () => {
    const said: string[] = [];
    const r = await runChaos({ ...DEFAULTS, seed: SEED, durationS: SECONDS, print: (l) => said.push(l), prefix: `ldx${process.pid % 1000}` });
    const summary = said.filter((l) => l.startsWith('chaos:') || l.startsWith('  ')).slice(0, 30).join('\n');
    assert.deepEqual(r.leftovers, [], 'the lab is gone');
    // The run did what it is for: moves and a kill under locks held, reclaims after them.
    assert.ok(r.counts.moves >= 6 && r.counts.kills >= 1, `moves and kills happened:\n${summary}`);
    assert.ok(r.counts.granted >= 50, `locks were granted:\n${summary}`);
    assert.ok(r.counts.notifies > 0 && r.counts.reclaimsOk + r.counts.reclaimsRefused > 0, `locks held at a move were reclaimed:\n${summary}`);
    assert.equal(r.lines.length, 0, `the invariant held:\n${summary}`);
  });
});
