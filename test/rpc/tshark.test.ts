// tshark, Wireshark's dissector, reads a captured exchange with our server and client and
// finds every call and reply well formed.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XdrWriter } from '../../src/xdr';
import { AUTH_SYS, encodeCall, encodeRecord, NULL_AUTH, RecordDecoder, RpcClient, RpcReplyError, RpcServer, type Credential, type Procedure } from '../../src/rpc';
import { hasCommand, requireNamespaceRoot, sh } from '../support/netns';
import { waitFor } from '../support/wait';
import { rawTcp, TEST_PROG, testProgram, udpAnswers } from './support';

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
    const dissect = ['-o', 'rpc.dissect_unknown_programs:TRUE', '-d', `udp.port==${port},rpc`, '-d', `tcp.port==${port},rpc`];
    // Besides the file, each frame's xids on stdout as captured (-P -l): what the capture holds so far.
    const capture = spawn('tshark', ['-i', 'lo', '-f', `port ${port}`, '-w', file, '-P', '-l', '-T', 'fields', '-e', 'rpc.xid', ...dissect], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let frames = '';
    capture.stderr!.on('data', (d) => (stderr += d));
    capture.stdout!.on('data', (d) => (frames += d));
    const inCapture = (xid: number): number => frames.split('\n').filter((l) => l.split(',').includes(`0x${xid.toString(16).padStart(8, '0')}`)).length;
    /** A NULL call with this xid; true once it and its reply are in the capture. */
    const marked = async (xid: number, ms: number): Promise<boolean> => {
      await udpAnswers('127.0.0.1', port, encodeCall({ xid, prog: TEST_PROG, vers: 1, proc: 0, cred: NULL_AUTH, verf: NULL_AUTH }));
      return waitFor(`xid ${xid} in the capture`, () => inCapture(xid) >= 2, ms).then(() => true, () => false);
    };
    await waitFor('tshark to start', () => /Capturing on/.test(stderr), 30_000).catch((err: Error) => assert.fail(`${err.message}: ${stderr}`));
    // "Capturing on" comes a moment before the filter is in place: capturing once a marker shows.
    let capturing = false;
    for (let i = 0; i < 30 && !capturing; i++) capturing = await marked(0x4d000000 + i, 500);
    assert.ok(capturing, `tshark captures our traffic: ${stderr}`);

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
    await waitFor('the fragmented call\'s reply', () => new RecordDecoder(1024).push(t.received()).length > 0);
    t.socket.destroy();
    // Frames come into the capture in order: once the last marker is in, everything before it is.
    assert.ok(await marked(0x454e4400, 10_000), 'the end marker reached the capture');
    const done = new Promise((r) => capture.once('exit', r));
    capture.kill('SIGINT');
    await done;
    await server.close();

    const text = sh('tshark', ['-r', file, '-V', ...dissect]);
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
