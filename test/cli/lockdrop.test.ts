// `lockdrop record`: the real command records an `ip addr add` as a pcap trace the replay source reads.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { lastValueFrom, toArray } from 'rxjs';
import { addonStatus } from '../../src/addon';
import { isOverflow, replaySource, type AddressChange } from '../../src/watch';
import { ip, requireNamespaceRoot, sh, uniqueName } from '../support/netns';
import { REPO, ensureBuilt } from '../daemon/harness';

describe('cli: lockdrop record', function () {
  this.timeout(60_000);
  before(function () {
    requireNamespaceRoot(this);
    if (!addonStatus().available) this.skip();
    ensureBuilt();
  });

  it('writes a trace of the address changes made while it runs', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'lockdrop-record-'));
    const out = path.join(dir, 'trace.pcap');
    const link = uniqueName('ldrec');
    ip('link', 'add', link, 'type', 'veth', 'peer', 'name', `${link}p`);
    ip('link', 'set', link, 'up');
    ip('link', 'set', `${link}p`, 'up'); // with carrier: an address on a link without one is not usable
    try {
      const rec = spawn(process.execPath, [path.join(REPO, 'bin', 'lockdrop'), 'record', '--out', out], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      rec.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
      for (let i = 0; i < 100 && !stderr.includes('recording to'); i++) await new Promise((r) => setTimeout(r, 100));
      ip('addr', 'add', '10.66.0.7/32', 'dev', link);
      await new Promise((r) => setTimeout(r, 300));
      rec.kill('SIGINT');
      assert.equal(await new Promise((r) => rec.once('exit', r)), 0, stderr);
      assert.match(stderr, /\d+ records, 0 overflows/);
      const changes = (await lastValueFrom(replaySource(out, { pace: 'fast' }).pipe(toArray()))).filter((c): c is AddressChange => !isOverflow(c));
      assert.ok(changes.some((c) => c.address === '10.66.0.7' && c.kind === 'added'), JSON.stringify(changes));
    } finally {
      sh('ip', ['link', 'del', link], { allowFail: true });
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
