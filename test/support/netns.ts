// Helpers for tests that need real network namespaces, addresses and peer programs.
// The suite runs inside its own namespace (scripts/mocha-ns.sh); sub-namespaces made here
// are removed by their dispose().
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

export const isRoot = (): boolean => process.getuid?.() === 0;
/** True when running inside the private namespace made by scripts/mocha-ns.sh. */
export const inTestNamespace = (): boolean => process.env.LOCKDROP_TEST_NS === '1';

/** Skips the calling suite unless we are root inside the test namespace. */
export function requireNamespaceRoot(ctx: Mocha.Context): void {
  if (!isRoot() || !inTestNamespace()) ctx.skip();
}

/**
 * Skips the calling suite (from its before hook) or test, saying why in every skipped test's
 * title, so the report shows the reason.
 */
export function skipBecause(ctx: Mocha.Context, reason: string): never {
  const runnable = ctx.currentTest ?? ctx.test;
  const isHook = (runnable as { type?: string } | undefined)?.type === 'hook';
  const all = (s: Mocha.Suite): Mocha.Runnable[] => [...s.tests, ...s.suites.flatMap(all)];
  const tests = isHook ? (runnable?.parent ? all(runnable.parent) : []) : runnable ? [runnable] : [];
  for (const t of tests) t.title += ` [skipped: ${reason}]`;
  ctx.skip();
}

export function sh(cmd: string, args: string[], opts: { allowFail?: boolean } = {}): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    if (opts.allowFail) return '';
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr || e.message}`);
  }
}

export const ip = (...args: string[]): string => sh('ip', args);

export function hasCommand(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

let counter = 0;
/** A unique short name (interface names are limited to 15 characters). */
export const uniqueName = (prefix: string): string => `${prefix}${process.pid % 10000}${++counter}`.slice(0, 15);

/**
 * An interface in the current (test) namespace carrying the given addresses (with or without a
 * prefix; IPv6 ones skip duplicate address detection). This kernel has no dummy driver, so it is
 * one end of a veth pair whose ends both stay here, both up.
 */
export function testInterface(addresses: string[] = []): { name: string; ifindex: number; dispose(): void } {
  const name = uniqueName('lda');
  ip('link', 'add', name, 'type', 'veth', 'peer', 'name', `${name}p`);
  ip('link', 'set', `${name}p`, 'up');
  ip('link', 'set', name, 'up');
  for (const a of addresses) ip('addr', 'add', a.includes('/') ? a : `${a}/${a.includes(':') ? 128 : 32}`, 'dev', name, ...(a.includes(':') ? ['nodad'] : []));
  const ifindex = (JSON.parse(ip('-j', 'link', 'show', 'dev', name)) as Array<{ ifindex: number }>)[0]!.ifindex;
  return { name, ifindex, dispose: () => void sh('ip', ['link', 'del', name], { allowFail: true }) };
}

/** rpcbind in the test namespace (its /run is private to the mocha run); resolves once it answers. */
export async function startRpcbind(): Promise<() => Promise<void>> {
  const child: ChildProcess = spawn('rpcbind', ['-f', '-w'], { stdio: 'ignore' });
  for (let i = 0; i < 50; i++) {
    if (existsSync('/run/rpcbind.sock') && sh('rpcinfo', ['-p', '127.0.0.1'], { allowFail: true }).includes('portmapper')) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  };
}

export interface Netns {
  name: string;
  exec(cmd: string, args: string[]): string;
  spawn(cmd: string, args: string[], opts?: { env?: NodeJS.ProcessEnv }): ChildProcess;
  dispose(): void;
}

/** A sub-namespace joined to the test namespace by a veth pair: hostAddr on our side, nsAddr inside. */
export function vethNamespace(hostAddr: string, nsAddr: string, prefixLen = 24, opts: { name?: string } = {}): Netns {
  const { name, inner, outer } = plugged(opts.name, (o) => {
    ip('addr', 'add', `${hostAddr}/${prefixLen}`, 'dev', o);
    ip('link', 'set', o, 'up');
  });
  ip('-n', name, 'addr', 'add', `${nsAddr}/${prefixLen}`, 'dev', inner);
  return handle(name, outer);
}

/**
 * A sub-namespace on a bridge of the test namespace: one veth whose inner end `dev` carries the
 * addresses (with prefix; IPv6 without duplicate address detection), the outer end a bridge port.
 */
export function bridgedNamespace(bridge: string, addresses: string[]): Netns & { dev: string } {
  const { name, inner, outer } = plugged(undefined, (o) => ip('link', 'set', o, 'master', bridge, 'up'));
  for (const a of addresses) ip('-n', name, 'addr', 'add', a, 'dev', inner, ...(a.includes(':') ? ['nodad'] : []));
  return { ...handle(name, outer), dev: inner };
}

/** A new namespace with lo up and the inner end of a veth, up; `attach` sets up the outer end here. */
function plugged(given: string | undefined, attach: (outer: string) => void): { name: string; inner: string; outer: string } {
  const name = given ?? uniqueName('ldns');
  const outer = uniqueName('vo');
  const inner = uniqueName('vi');
  ip('netns', 'add', name);
  ip('link', 'add', outer, 'type', 'veth', 'peer', 'name', inner);
  ip('link', 'set', inner, 'netns', name);
  attach(outer);
  ip('-n', name, 'link', 'set', 'lo', 'up');
  ip('-n', name, 'link', 'set', inner, 'up');
  return { name, inner, outer };
}

/** Runs commands in namespace `name`; dispose kills them and removes the namespace and its veth. */
function handle(name: string, outer: string): Netns {
  const children: ChildProcess[] = [];
  return {
    name,
    exec: (cmd, args) => sh('ip', ['netns', 'exec', name, cmd, ...args]),
    spawn: (cmd, args, opts = {}) => {
      const child = spawn('ip', ['netns', 'exec', name, cmd, ...args], { env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      return child;
    },
    dispose: () => {
      for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
      sh('ip', ['link', 'del', outer], { allowFail: true });
      sh('ip', ['netns', 'del', name], { allowFail: true });
    },
  };
}

export interface Capture {
  file: string;
  /**
   * Resolves once the capture file holds `bytes` (a marker packet's payload the caller sent):
   * packets are written in the order captured, so everything sent before the marker is in the file
   * too. dumpcap hands packets over in blocks and flushes the file at most every update interval
   * (about 100 ms), reporting `Packets: N` on stderr each time: the file is read again on each
   * report. Rejects after `timeoutMs`, or when dumpcap exits first.
   */
  holds(bytes: Buffer, timeoutMs?: number): Promise<void>;
  /** Ends the capture (SIGINT, so dumpcap finishes the file) and waits for dumpcap to exit. Idempotent. */
  stop(): Promise<void>;
}

/**
 * dumpcap on an interface of this namespace ('any' for all) with a capture filter; resolves once
 * dumpcap says "Capturing on", which it prints before its capture is live: a test that needs
 * every packet sends a marker until the capture holds() it.
 */
export async function startCapture(iface: string, file: string, filter: string): Promise<Capture> {
  const child = spawn('dumpcap', ['-i', iface, '-w', file, '-f', filter], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let err = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('Capturing on')) resolve();
    });
    child.once('exit', () => reject(new Error(`dumpcap exited: ${err}`)));
  });
  return {
    file,
    holds: (bytes, timeoutMs = 10_000) =>
      new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (!existsSync(file) || !readFileSync(file).includes(bytes)) return; // dumpcap may not have made it yet
          done();
          resolve();
        };
        const gone = (): void => (done(), reject(new Error(`dumpcap exited before the capture held the marker: ${err}`)));
        const timer = setTimeout(() => (done(), reject(new Error(`the capture did not hold the marker within ${timeoutMs} ms; dumpcap said: ${JSON.stringify(err.slice(-200))}`))), timeoutMs);
        const done = (): void => {
          clearTimeout(timer);
          child.stderr!.off('data', check);
          child.off('exit', gone);
        };
        child.stderr!.on('data', check);
        child.once('exit', gone);
        check();
        if (child.exitCode !== null || child.signalCode !== null) gone();
      }),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      await exited;
    },
  };
}
