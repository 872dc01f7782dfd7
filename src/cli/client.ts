// A client for the daemon's control socket (protocol in src/control): one request,
// one reply; or a watch stream. Used by lockdropctl, the demo and tests.
import { connect, type Socket } from 'node:net';
import type { ControlRequest, WatchEvent } from '../control';

export const DEFAULT_CONTROL = process.env.LOCKDROP_CONTROL ?? '/run/lockdrop/control.sock';

export class ControlError extends Error {
  constructor(
    message: string,
    /** A refused configuration's problems, one `key: why` each. */
    readonly problems: string[] = [],
  ) {
    super(message);
    this.name = 'ControlError';
  }
}

function open(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      const why = err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? 'is lockdropd running?' : err.code === 'EACCES' ? 'only root may use it' : err.message;
      reject(new ControlError(`cannot connect to ${path}: ${why}`));
    });
  });
}

/** Reads NDJSON lines from a socket. */
function lines(s: Socket, onLine: (value: Record<string, unknown>) => void): void {
  let buf = '';
  s.setEncoding('utf8');
  s.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (!line.trim()) continue;
      let value: Record<string, unknown>;
      try {
        value = JSON.parse(line) as Record<string, unknown>;
      } catch {
        // Not our daemon, or a broken one: say so instead of throwing out of a socket callback.
        s.destroy(new ControlError(`the daemon sent a line that is not JSON: ${line.slice(0, 80)}`));
        return;
      }
      onLine(value);
    }
  });
}

/** Sends one request and resolves with its result; rejects with ControlError on an error reply. */
export async function request<T = unknown>(path: string, req: ControlRequest, timeoutMs = 30_000): Promise<T> {
  const s = await open(path);
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      s.destroy();
      reject(new ControlError(`no answer from ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    const finish = (f: () => void) => {
      clearTimeout(timer);
      s.destroy();
      f();
    };
    lines(s, (reply) => {
      if (reply.id !== 1 && reply.id !== null) return; // null: the connection was refused as a whole
      if (reply.ok === true) finish(() => resolve(reply.result as T));
      else finish(() => reject(new ControlError(String(reply.error), Array.isArray(reply.problems) ? reply.problems.map(String) : [])));
    });
    s.on('close', () => finish(() => reject(new ControlError('the daemon closed the connection without an answer'))));
    s.on('error', (err) => finish(() => reject(new ControlError(err.message))));
    s.write(JSON.stringify({ id: 1, ...req }) + '\n');
  });
}

/** Streams watch events until the returned stop() is called or the daemon goes away (then onEnd). */
export async function watch(path: string, onEvent: (e: WatchEvent) => void, onEnd: (err?: Error) => void): Promise<() => void> {
  const s = await open(path);
  lines(s, (reply) => {
    if (reply.event) onEvent(reply.event as WatchEvent);
    else if (reply.ok === false) onEnd(new ControlError(String(reply.error)));
  });
  s.on('close', () => onEnd());
  s.on('error', (err) => onEnd(err));
  s.write(JSON.stringify({ id: 1, cmd: 'watch' }) + '\n');
  return () => s.destroy();
}
