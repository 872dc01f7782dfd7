// tshark, Wireshark's dissector, reads a captured exchange with our server and client and
// finds every call and reply well formed.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XdrWriter } from '../../src/xdr';
import { AUTH_SYS, encodeCall, encodeRecord, NULL_AUTH, RpcClient, RpcReplyError, RpcServer, type Credential, type Procedure } from '../../src/rpc';
import { hasCommand, requireNamespaceRoot, sh } from '../support/netns';
import { rawTcp, sleep, TEST_PROG, testProgram } from './support';

/** An NLM-numbered program (100021 v4) so tshark dissects the arguments too: TEST (proc 1) with a made-up lock. */
const nlmTest: Procedure<Buffer, number> = {
  name: 'TEST', decodeArgs: (r) => r.rest(), encodeResult: (w, stat) => void w.opaque(Buffer.from('cookie')).uint(stat), handle: () => 0,
};

function nlm4TestArgs(): Buffer {
  return new XdrWriter()
    .opaque(Buffer.from('cookie')) // cookie
    .bool(false) // exclusive
    .string('client.example') // caller_name
    .opaque(Buffer.alloc(32, 1)) // fh
    .opaque(Buffer.from('owner')) // oh
    .int(4242) // svid
    .uhyper(0n) // l_offset
    .uhyper(100n) // l_len
    .toBuffer();
}

describe('tshark dissects our RPC exchange', function () {
  this.timeout(40_000);
  let dir: string;

  before(function () {
    requireNamespaceRoot(this);
    if (!hasCommand('tshark')) this.skip();
    dir = mkdtempSync(join(tmpdir(), 'lockdrop-tshark-'));
  });
  after(() => dir && rmSync(dir, { recursive: true, force: true }));

  it('with no malformed-packet marks', async () => {
    const server = new RpcServer();
    server.register(testProgram(1));
    server.register({ prog: 100021, vers: 4, procedures: new Map([[1, nlmTest]]) });
    await server.addAddress('127.0.0.1');
    const port = server.port;
    const file = join(dir, 'rpc.pcap');
    const capture = spawn('tshark', ['-i', 'lo', '-f', `port ${port}`, '-w', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    capture.stderr!.on('data', (d) => (stderr += d));
    for (let i = 0; i < 300 && !/Capturing on/.test(stderr); i++) await sleep(100);
    assert.match(stderr, /Capturing on/);
    await sleep(300);

    const sys: Credential = { flavor: AUTH_SYS, stamp: 7, machineName: 'client.example', uid: 0, gid: 0, gids: [0, 1] };
    for (const transport of ['udp', 'tcp'] as const) {
      const c: RpcClient = new RpcClient({ transport, host: '127.0.0.1', port, cred: sys });
      await c.call(TEST_PROG, 1, 0);
      assert.equal(await c.call(TEST_PROG, 1, 1, (w) => void w.string('hello'), (r) => r.string()), 'hello');
      await c.call(100021, 4, 1, (w) => void w.raw(nlm4TestArgs()), (r) => r.rest());
      await assert.rejects(c.call(TEST_PROG, 9, 0), RpcReplyError); // PROG_MISMATCH
      await assert.rejects(c.call(TEST_PROG, 1, 50), RpcReplyError); // PROC_UNAVAIL
      c.close();
    }
    // A call in three fragments.
    const t = await rawTcp('127.0.0.1', port);
    t.socket.write(encodeRecord(encodeCall({ xid: 77, prog: TEST_PROG, vers: 1, proc: 1, cred: NULL_AUTH, verf: NULL_AUTH }, new XdrWriter().string('fragmented').toBuffer()), 20));
    await sleep(200);
    t.socket.destroy();
    await sleep(500);
    const done = new Promise((r) => capture.once('exit', r));
    capture.kill('SIGINT');
    await done;
    await server.close();

    const text = sh('tshark', ['-r', file, '-V', '-o', 'rpc.dissect_unknown_programs:TRUE', '-d', `udp.port==${port},rpc`, '-d', `tcp.port==${port},rpc`]);
    assert.doesNotMatch(text, /Malformed/i);
    assert.doesNotMatch(text, /Expert Info \(Error/);
    const count = (re: RegExp): number => text.match(re)?.length ?? 0;
    assert.ok(count(/Message Type: Call \(0\)/g) >= 11, `calls seen: ${count(/Message Type: Call \(0\)/g)}`);
    assert.ok(count(/Message Type: Reply \(1\)/g) >= 11);
    assert.match(text, /Accept State: remote can't support version # \(2\)/);
    assert.match(text, /Accept State: program can't support procedure \(3\)/);
    assert.match(text, /Machine Name: client\.example/);
    assert.match(text, /Network Lock Manager Protocol/);
    assert.match(text, /svid: 4242/);
  });
});
