// The control socket: a unix stream socket, 0600 inside a 0700 directory, served only to root
// (checked per connection: SO_PEERCRED, or `ss` and /proc without the native addon; see peer.ts).
// Requests are NDJSON (protocol.ts); a malformed line gets an error reply and the connection stays
// usable; a line over MAX_REQUEST_BYTES closes it.
import { mkdirSync, lstatSync, chmodSync, unlinkSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Observable, Subscription } from 'rxjs';
import type { Logger } from 'pino';
import { MAX_REQUEST_BYTES, requestSchema, type ControlReply, type ControlRequest, type DropReport, type DropTarget, type ExportsReport, type GraceReport, type GraceTarget, type LocksFilter, type LockView, type LogLevel, type LogLevelReport, type MonitorView, type NotifyReport, type ReloadReport, type StatusReport, type WatchEvent, type RestartReport } from '../control';
import { peerCheck, peerUid, type PeerCheck } from './peer';

/** What the daemon answers with; each command maps to one method. */
export interface ControlHandlers {
  status(): StatusReport;
  locks(filter: LocksFilter): LockView[];
  drop(target: DropTarget): Promise<DropReport>;
  grace(action: 'start' | 'end', target: GraceTarget, seconds?: number): GraceReport;
  monitors(ip?: string): MonitorView[];
  notify(ip: string): Promise<NotifyReport>;
  watch(): Observable<WatchEvent>;
  /** Throws an error with `problems` (a ConfigError) when the new file is invalid. */
  reload(): ReloadReport;
  logLevel(level: LogLevel): LogLevelReport;
  exports(): ExportsReport;
  /** Throws when this daemon cannot restart itself (run by a service manager). */
  restart(): RestartReport;
}

export interface ControlServerOptions {
  path: string;
  handlers: ControlHandlers;
  log: Logger;
  /** Who may talk; default: root only. Tests of the refusal path keep the default. */
  allowUid?: (uid: number) => boolean;
}

/** A watcher whose unsent output passes this is cut off rather than buffered without bound. */
const MAX_WATCH_BACKLOG = 4 << 20;

/** Is something answering on this unix socket path? */
function answering(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export class ControlServer {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly allowUid: (uid: number) => boolean;
  private readonly check: PeerCheck = peerCheck();

  constructor(private readonly opts: ControlServerOptions) {
    this.allowUid = opts.allowUid ?? ((uid) => uid === 0);
  }

  async listen(): Promise<void> {
    const { path } = this.opts;
    const dir = dirname(path);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // Whoever owns the folder can replace the socket lockdropctl and `check` talk to: it must be
    // ours (not a symlink to another's) as well as 0700.
    const st = lstatSync(dir);
    if (st.isSymbolicLink()) throw new Error(`control socket directory ${dir} is a symlink; it must be a directory of its own`);
    if (st.uid !== process.geteuid!()) throw new Error(`control socket directory ${dir} is owned by uid ${st.uid}; it must be owned by lockdropd's user (uid ${process.geteuid!()})`);
    const mode = st.mode & 0o777;
    if (mode !== 0o700) throw new Error(`control socket directory ${dir} has mode ${mode.toString(8)}; it must be 700 (only root may reach the socket)`);
    if (await answering(path)) throw new Error(`control socket ${path} is in use by another process`);
    try {
      unlinkSync(path); // a stale socket left by a crash
    } catch {
      /* none */
    }
    const server = createServer((s) => this.accept(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    chmodSync(path, 0o600);
    server.on('error', (err) => this.opts.log.error({ err }, 'control socket error'));
    this.server = server;
    if (this.check.method === 'ss') {
      this.opts.log.warn({ peerCheck: this.check.method, reason: this.check.reason }, `control: the native addon is unavailable (${this.check.reason}): peers are identified by ss and /proc, tens of ms per connection, and a client in another PID namespace is refused`);
    }
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    // net.Server removes its unix socket file on close
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    const subs: Subscription[] = [];
    socket.on('close', () => {
      this.sockets.delete(socket);
      for (const s of subs) s.unsubscribe();
    });
    socket.on('error', () => socket.destroy());
    const send = (reply: ControlReply) => {
      if (!socket.destroyed) socket.write(JSON.stringify(reply) + '\n');
    };
    let buffered = '';
    let ready: Promise<boolean> | undefined;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      if (buffered.length > MAX_REQUEST_BYTES && !buffered.includes('\n')) {
        send({ id: null, ok: false, error: `request longer than ${MAX_REQUEST_BYTES} bytes` });
        socket.end();
        buffered = '';
        return;
      }
      ready ??= this.authorise(socket, send);
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.trim() === '') continue;
        void ready.then((ok) => (ok ? this.handleLine(line, send, subs, socket) : undefined));
      }
    });
  }

  /** Checks the peer once per connection; a refused peer gets one error line and is closed. */
  private async authorise(socket: Socket, send: (r: ControlReply) => void): Promise<boolean> {
    let uid: number | undefined;
    let why: string | undefined;
    try {
      uid = await peerUid(socket, this.check);
    } catch (err) {
      why = (err as Error).message;
    }
    if (uid !== undefined && this.allowUid(uid)) return true;
    this.opts.log.warn({ uid: uid ?? null, peerCheck: this.check.method, ...(why === undefined ? {} : { reason: why }) }, 'control: request from a non-root peer refused');
    send({ id: null, ok: false, error: `permission denied: the control socket serves root only (peer uid ${uid ?? `unknown: ${why}`})` });
    socket.end();
    return false;
  }

  private async handleLine(line: string, send: (r: ControlReply) => void, subs: Subscription[], socket: Socket): Promise<void> {
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch {
      send({ id: null, ok: false, error: 'malformed request: not JSON' });
      return;
    }
    const id = raw !== null && typeof raw === 'object' && 'id' in raw ? (raw as { id: unknown }).id : null;
    const parsed = requestSchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      send({ id, ok: false, error: `malformed request: ${issue.path.join('.') || 'request'}: ${issue.message}` });
      return;
    }
    try {
      const req = parsed.data;
      if (req.cmd === 'watch') {
        send({ id, ok: true, result: 'watching' });
        subs.push(
          this.opts.handlers.watch().subscribe((event) => {
            if (socket.writableLength > MAX_WATCH_BACKLOG) {
              socket.destroy();
              return;
            }
            send({ id, event });
          }),
        );
        return;
      }
      send({ id, ok: true, result: await this.dispatch(req) });
    } catch (err) {
      const problems = (err as { problems?: string[] }).problems;
      send({ id, ok: false, error: (err as Error).message, ...(problems?.length ? { problems } : {}) });
    }
  }

  private dispatch(req: Exclude<ControlRequest, { cmd: 'watch' }>): unknown {
    const h = this.opts.handlers;
    switch (req.cmd) {
      case 'status':
        return h.status();
      case 'locks':
        return h.locks({ ip: req.ip, client: req.client, export: req.export, file: req.file, fh: req.fh });
      case 'drop':
        if ([req.ip, req.client, req.export, req.fsid].filter((t) => t !== undefined).length !== 1) throw new Error('drop needs exactly one of ip, client, export, fsid');
        return h.drop({ ip: req.ip, client: req.client, export: req.export, fsid: req.fsid });
      case 'grace':
        if ((req.ip === undefined) === (req.export === undefined)) throw new Error('grace needs exactly one of ip, export');
        return h.grace(req.action, { ip: req.ip, export: req.export }, req.seconds);
      case 'monitors':
        return h.monitors(req.ip);
      case 'notify':
        return h.notify(req.ip);
      case 'reload':
        return h.reload();
      case 'restart':
        return h.restart();
      case 'log-level':
        return h.logLevel(req.level);
      case 'exports':
        return h.exports();
    }
  }
}
