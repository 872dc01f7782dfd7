// A service manager's end of sd_notify for tests: a unix datagram socket (Node has none, so a
// small python3 program binds it) that reports each message with the sender's pid
// (SO_PASSCRED), and at the moment a READY=1 arrives makes an RPC NULL call to each given
// target before it reports that message: "was it serving when it said so?"
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, unlinkSync } from 'node:fs';

export interface NotifyMessage {
  /** The sender's pid, from the kernel's credentials. */
  pid: number;
  /** KEY=VALUE pairs of the datagram. */
  fields: Record<string, string>;
  /** For READY=1: each target "host:port/prog/vers" and whether its NULL call was answered within 1 s. */
  nulls?: Record<string, boolean>;
}

const RECEIVER = String.raw`
import json, os, random, select, socket, struct, sys
path, targets = sys.argv[1], sys.argv[2:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind(path)
print(json.dumps({"bound": path}), flush=True)

def null_call(target):
    addr, prog, vers = target.split("/")
    host, port = addr.rsplit(":", 1)
    xid = random.getrandbits(32)
    # xid, CALL, RPC version 2, prog, vers, proc 0 (NULL), AUTH_NONE credential and verifier (flavor, length)
    call = struct.pack(">IIIIIIIIII", xid, 0, 2, int(prog), int(vers), 0, 0, 0, 0, 0)
    c = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        c.sendto(call, (host, int(port)))
        if not select.select([c], [], [], 1.0)[0]:
            return False
        reply = c.recv(512)
        # xid, REPLY, MSG_ACCEPTED, verifier (flavor, empty body), SUCCESS
        return len(reply) >= 24 and struct.unpack(">IIIIII", reply[:24]) == (xid, 1, 0, 0, 0, 0)
    except OSError:
        return False
    finally:
        c.close()

while True:
    msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
    pid = -1
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", data[:12])[0]
    fields = dict(l.split("=", 1) for l in msg.decode().split("\n") if "=" in l)
    out = {"pid": pid, "fields": fields}
    if fields.get("READY") == "1":
        out["nulls"] = {t: null_call(t) for t in targets}
    print(json.dumps(out), flush=True)
`;

export class NotifyReceiver {
  readonly messages: NotifyMessage[] = [];
  private readonly waiters = new Set<{ match: (m: NotifyMessage) => boolean; resolve: (m: NotifyMessage) => void }>();

  private constructor(
    readonly path: string,
    private readonly child: ChildProcess,
  ) {}

  /** Binds `path`; on READY=1 it calls NULL on each target ("host:port/prog/vers"). */
  static async start(path: string, targets: string[] = []): Promise<NotifyReceiver> {
    const child = spawn('python3', ['-c', RECEIVER, path, ...targets], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    return new Promise((resolve, reject) => {
      let receiver: NotifyReceiver | undefined;
      let buf = '';
      child.once('exit', (code) => (receiver ? undefined : reject(new Error(`notify receiver exited with ${code}: ${stderr}`))));
      child.stdout!.setEncoding('utf8').on('data', (c: string) => {
        buf += c;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = JSON.parse(buf.slice(0, nl)) as NotifyMessage & { bound?: string };
          buf = buf.slice(nl + 1);
          if (line.bound !== undefined) {
            receiver = new NotifyReceiver(path, child);
            resolve(receiver);
            continue;
          }
          receiver!.messages.push(line);
          for (const w of receiver!.waiters) if (w.match(line)) {
            receiver!.waiters.delete(w);
            w.resolve(line);
          }
        }
      });
    });
  }

  /** The first message (past or future) matching, within timeoutMs. */
  wait(match: (m: NotifyMessage) => boolean, timeoutMs = 30_000): Promise<NotifyMessage> {
    const seen = this.messages.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const w = { match, resolve: (m: NotifyMessage) => (clearTimeout(timer), resolve(m)) };
      const timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(new Error(`no sd_notify message matched within ${timeoutMs} ms; got ${JSON.stringify(this.messages)}`));
      }, timeoutMs);
      this.waiters.add(w);
    });
  }

  async close(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((r) => this.child.once('exit', r));
      this.child.kill('SIGTERM');
      await exited;
    }
    if (existsSync(this.path)) unlinkSync(this.path);
  }
}
