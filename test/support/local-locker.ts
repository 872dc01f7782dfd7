// A local process holding a lock on a file, as another program on the NFS server would: a real
// separate process (python3's fcntl), POSIX (F_SETLK/F_SETLKW) or OFD (F_OFD_SETLK), held until
// release() or the process is killed.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

const SCRIPT = String.raw`
import fcntl, os, struct, sys
path, kind, typ, start, length = sys.argv[1:6]
fd = os.open(path, os.O_RDWR)
cmd = {'posix': fcntl.F_SETLK, 'posix-wait': fcntl.F_SETLKW, 'ofd': fcntl.F_OFD_SETLK}[kind]
l_type = fcntl.F_WRLCK if typ == 'write' else fcntl.F_RDLCK
try:
    fcntl.fcntl(fd, cmd, struct.pack('hhqqi4x', l_type, 0, int(start), int(length), 0))
    print('locked', flush=True)
except OSError as e:
    print('refused', e.errno, flush=True)
    sys.exit(3)
sys.stdin.read()
`;

export interface LocalLock {
  /** 'locked' once the kernel granted it, 'refused' when it conflicted (F_SETLK), set when known. */
  readonly outcome: Promise<'locked' | 'refused'>;
  readonly child: ChildProcess;
  release(): Promise<void>;
}

const running = new Set<ChildProcess>();

/** Ends every local locker still running (an after hook: held files keep a filesystem busy). */
export async function releaseLocalLocks(): Promise<void> {
  await Promise.all([...running].map((c) => new Promise<void>((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) return resolve();
    c.once('exit', () => resolve());
    c.kill('SIGKILL');
  })));
}

export function localLock(path: string, o: { kind?: 'posix' | 'posix-wait' | 'ofd'; type?: 'read' | 'write'; start?: number; length?: number } = {}): LocalLock {
  const child = spawn('python3', ['-c', SCRIPT, path, o.kind ?? 'posix', o.type ?? 'write', String(o.start ?? 0), String(o.length ?? 0)], { stdio: ['pipe', 'pipe', 'inherit'] });
  running.add(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => (running.delete(child), resolve())));
  const outcome = new Promise<'locked' | 'refused'>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once('line', (l) => resolve(l.startsWith('locked') ? 'locked' : 'refused'));
    child.once('exit', (code) => reject(new Error(`local locker exited (${code}) before answering`)));
    child.once('error', reject);
  });
  outcome.catch(() => undefined);
  return {
    outcome,
    child,
    release: async () => {
      child.stdin!.end();
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
