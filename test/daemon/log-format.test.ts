// --log-format text (logFormat): lines for the console and journald, a level word instead of
// pino's number; JSON stays the default.
import assert from 'node:assert/strict';
import { textLine } from '../../src/daemon/log-text';
import { requireNamespaceRoot } from '../support/netns';
import { ensureBuilt, spawnDaemon } from './harness';

describe('daemon: --log-format text', function () {
  this.timeout(60_000);

  it('a JSON line becomes time, level word, part, message, then the other fields', () => {
    const line = textLine(JSON.stringify({ level: 40, time: '2026-12-07T21:00:00.000Z', pid: 7, part: 'nlm', msg: 'refused a request', client: '192.0.2.1', port: 800, reason: 'insecure port' }) + '\n');
    assert.equal(line, '2026-12-07T21:00:00.000Z WARN  [nlm] refused a request  client=192.0.2.1 port=800 reason="insecure port"\n');
    assert.equal(textLine('not json'), 'not json\n');
  });

  it('lockdropd --log-format text logs words, not numbers', async function () {
    requireNamespaceRoot(this);
    ensureBuilt();
    const d = spawnDaemon(['--log-format', 'text']);
    try {
      let out = '';
      d.child.stdout!.on('data', (c: string) => (out += c));
      for (let i = 0; i < 150 && !/ started: /.test(out); i++) await new Promise((r) => setTimeout(r, 100));
      assert.match(out, /^\d{4}-\d\d-\d\dT[\d:.]+Z INFO  lockdropd [\d.]+ started: NLM port \d+/m);
      assert.doesNotMatch(out, /"level":/);
      assert.equal(await d.stop(), 0);
    } finally {
      d.cleanup();
    }
  });
});
