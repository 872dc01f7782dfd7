// Readiness (sd_notify): READY=1 only once every address present at start is served — checked
// with NLM NULL calls and an rpcbind lookup made the moment READY=1 arrives — RELOADING=1 and
// READY=1 around a reload that names the bad keys, STOPPING=1, and STATUS= lines. Here the
// daemon runs in this process with the notify function injected (the seam of readiness.ts);
// test/package/deb.test.ts runs the installed unit's ExecStart against a real NOTIFY_SOCKET.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { NLM_PROG } from '../../src/nlm';
import { callOnce, getPort } from '../../src/rpc';
import { loadConfig, type ConfigInput } from '../../src/daemon/config';
import { Daemon } from '../../src/daemon/daemon';
import { Readiness } from '../../src/daemon/readiness';
import { requireNamespaceRoot, startRpcbind, testInterface } from '../support/netns';

const ADDRESSES = ['10.79.0.1', '10.79.0.2'];
const NLM_PORT = 40451;
const NSM_PORT = 40461;

const nullCall = (host: string, transport: 'udp' | 'tcp'): Promise<boolean> =>
  callOnce({ transport, host, port: NLM_PORT, timeoutMs: 1_000, retransmitMs: 200 }, NLM_PROG, 4, 0, () => undefined, () => undefined).then(() => true, () => false);

describe('daemon: readiness (sd_notify)', function () {
  this.timeout(60_000);
  let dir: string;
  let stopRpcbind: (() => Promise<void>) | undefined;
  let nic: ReturnType<typeof testInterface> | undefined;

  before(async function () {
    requireNamespaceRoot(this);
    stopRpcbind = await startRpcbind();
    nic = testInterface(ADDRESSES);
    dir = mkdtempSync(path.join(tmpdir(), 'lockdrop-ready-'));
  });
  after(async () => {
    nic?.dispose();
    await stopRpcbind?.();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('READY=1 once every present address answers NLM and rpcbind has the registration; RELOADING/READY around a reload; STOPPING=1', async () => {
    const file = path.join(dir, 'lockdrop.yaml');
    const base: ConfigInput = { stateDir: path.join(dir, 'state'), control: path.join(dir, 'run', 'control.sock'), nlmPort: NLM_PORT, nsmPort: NSM_PORT, addresses: ADDRESSES, sources: ['netlink', 'poll'], logLevel: 'silent' };
    writeFileSync(file, JSON.stringify(base));
    const messages: string[] = [];
    // At READY=1: NULL over UDP and TCP to every address, and rpcbind's answer, started at once.
    let atReady: Promise<{ nulls: boolean[]; port: number }> | undefined;
    const notify = (m: string): boolean => {
      messages.push(m);
      if (m.split('\n').includes('READY=1') && !atReady) {
        atReady = (async () => ({
          nulls: await Promise.all(ADDRESSES.flatMap((a) => [nullCall(a, 'udp'), nullCall(a, 'tcp')])),
          port: await getPort('127.0.0.1', NLM_PROG, 4, 'udp', { timeoutMs: 1_000 }),
        }))();
      }
      return true;
    };
    const log = pino({ level: 'silent' });
    const daemon = await Daemon.start(loadConfig(file, {}), log, { loadConfig: () => loadConfig(file, {}), readiness: new Readiness(notify, log) });
    try {
      assert.equal(messages.filter((m) => m.includes('READY=1')).length, 1, `one READY=1: ${JSON.stringify(messages)}`);
      const r = await atReady!;
      assert.deepEqual(r.nulls, [true, true, true, true], 'every present address answered NLM NULL over UDP and TCP at READY=1');
      assert.equal(r.port, NLM_PORT, 'rpcbind had the registration at READY=1');
      assert.equal(daemon.status().ready, true);

      // A bad file: RELOADING=1, the error names the key, READY=1 again with the old configuration.
      messages.length = 0;
      writeFileSync(file, JSON.stringify({ ...base, grace: 'soon', colour: 'blue' }));
      assert.throws(() => daemon.reloadFromFile(), (err: Error & { problems?: string[] }) => {
        assert.deepEqual(err.problems, ['grace: Expected number, received string', 'colour: unknown key']);
        return true;
      });
      assert.match(messages[0]!, /^RELOADING=1\nMONOTONIC_USEC=\d+\nSTATUS=reloading/);
      assert.match(messages[1]!, /^READY=1\nSTATUS=serving 2 addresses \(10\.79\.0\.1, 10\.79\.0\.2\); 0 locks, 0 monitored hosts$/);
      // A good one: applied and reported.
      writeFileSync(file, JSON.stringify({ ...base, grace: 45 }));
      assert.deepEqual(daemon.reloadFromFile(), { changed: ['grace'], needsRestart: [] });
      assert.equal(daemon.config.grace, 45);
    } finally {
      messages.length = 0;
      await daemon.stop();
    }
    assert.match(messages[0]!, /^STOPPING=1/);
  });
});
