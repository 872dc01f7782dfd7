import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { sdNotify } from '../../src/addon';

// A unix datagram receiver in a separate process (Node cannot bind one): prints 'ready', then
// each datagram as a JSON string on its own line; with 'hold' it binds and never reads.
const RECEIVER = `
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
addr = sys.argv[1]
s.bind('\\0' + addr[1:] if addr.startswith('@') else addr)
print('ready', flush=True)
if len(sys.argv) > 2: sys.stdin.read()
else:
    while True: print(json.dumps(s.recv(65536).decode()), flush=True)
`;

class Receiver {
  readonly lines: string[] = [];
  private waiting: (() => void) | undefined;
  private constructor(private readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (l) => {
      this.lines.push(l);
      this.waiting?.();
    });
  }
  static async start(address: string, hold = false): Promise<Receiver> {
    const child = spawn('/usr/bin/python3', ['-u', '-c', RECEIVER, address, ...(hold ? ['hold'] : [])], { stdio: ['pipe', 'pipe', 'inherit'] });
    const r = new Receiver(child);
    await r.line(0);
    assert.equal(r.lines[0], 'ready');
    return r;
  }
  /** The n-th line, waiting up to 5 s for it. */
  async line(n: number): Promise<string> {
    const end = Date.now() + 5000;
    while (this.lines.length <= n) {
      if (Date.now() > end) throw new Error(`receiver: no line ${n} in 5 s (have ${JSON.stringify(this.lines)})`);
      await new Promise<void>((r) => {
        this.waiting = r;
        setTimeout(r, 100);
      });
    }
    return this.lines[n]!;
  }
  async stop(): Promise<void> {
    const gone = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGKILL');
    await gone;
  }
}

describe('addon: sd_notify', () => {
  let dir = '';
  let receiver: Receiver | undefined;
  const saved = process.env.NOTIFY_SOCKET;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'lockdrop-notify-'));
  });
  afterEach(async () => {
    await receiver?.stop();
    receiver = undefined;
    rmSync(dir, { recursive: true, force: true });
    if (saved === undefined) delete process.env.NOTIFY_SOCKET;
    else process.env.NOTIFY_SOCKET = saved;
  });

  it('sends one datagram to $NOTIFY_SOCKET, a path', async () => {
    const path = join(dir, 'notify');
    receiver = await Receiver.start(path);
    process.env.NOTIFY_SOCKET = path;
    assert.equal(sdNotify('READY=1\nSTATUS=serving 2 addresses'), true);
    assert.equal(sdNotify('STATUS=é'), true);
    assert.equal(JSON.parse(await receiver.line(1)), 'READY=1\nSTATUS=serving 2 addresses');
    assert.equal(JSON.parse(await receiver.line(2)), 'STATUS=é');
  });

  it('sends to an @abstract name', async () => {
    const name = `@lockdrop-test-${process.pid}-${Date.now()}`;
    receiver = await Receiver.start(name);
    assert.equal(sdNotify('RELOADING=1', name), true);
    assert.equal(JSON.parse(await receiver.line(1)), 'RELOADING=1');
  });

  it('returns false, sending nothing, when NOTIFY_SOCKET is unset or empty', () => {
    delete process.env.NOTIFY_SOCKET;
    assert.equal(sdNotify('READY=1'), false);
    process.env.NOTIFY_SOCKET = '';
    assert.equal(sdNotify('READY=1'), false);
  });

  it('throws errno errors for unusable addresses and failed sends, without blocking on a full queue', async () => {
    assert.throws(() => sdNotify('READY=1', join(dir, 'nobody')), { code: 'ENOENT' });
    writeFileSync(join(dir, 'file'), '');
    assert.throws(() => sdNotify('READY=1', join(dir, 'file')), { code: 'ECONNREFUSED' });
    assert.throws(() => sdNotify('READY=1', 'relative/path'), { code: 'EAFNOSUPPORT' });
    assert.throws(() => sdNotify('READY=1', 'vsock:2:1234'), { code: 'EAFNOSUPPORT' });
    assert.throws(() => sdNotify('READY=1', `/${'x'.repeat(200)}`), { code: 'ENAMETOOLONG' });
    const path = join(dir, 'full');
    receiver = await Receiver.start(path, true);
    let sent = 0;
    const error = (() => {
      for (; sent < 100000; sent++) {
        try {
          sdNotify('STATUS=x', path);
        } catch (err) {
          return err as NodeJS.ErrnoException;
        }
      }
      return undefined;
    })();
    assert.equal(error?.code, 'EAGAIN', `after ${sent} datagrams nobody reads`);
    assert.ok(sent > 0);
  });
});
