// A real NFS-Ganesha (4.3, Debian's nfs-ganesha + nfs-ganesha-vfs) for tests: NFSv3 + MOUNT only,
// NLM and RQUOTA off (lockdropd serves NLM beside it), one FSAL_VFS export, on a node of its own.
// With `nlm: true` its own NLM v4 is on too (bench/nlm-vs-ganesha.ts measures it against lockdrop;
// it monitors its clients through a statd of the node, which the caller starts).
//
// A node is a network namespace with its own mount namespace (a tmpfs on /run) and its own rpcbind,
// which anchors both: Ganesha must register MOUNT and NFS with an rpcbind, found through
// /run/rpcbind.sock (or port 111) of its namespaces, and exits if it cannot. Any process whose net
// and mount namespaces hold an rpcbind can be a node: startNfsNode() makes one joined to the
// current namespace by veth; a src/demo/lab.ts LabHost ({ netns, address, anchorPid }) is one too.
//
// Quirks seen with 4.3 here: it starts and registers in ~0.1 s; Bind_Addr must resolve with
// getaddrinfo(AI_ADDRCONFIG), so the node needs a non-loopback IPv4 address (with only lo, even
// "127.0.0.1" is "Name or service not known"); it runs the NFSv4 grace period at start unless
// NFSv4 { Graceless = true } (set here); NFS on 2049, mountd on an ephemeral port unless fixed;
// without dbus and krb5 it logs CRIT lines about them and carries on.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { hasCommand, inTestNamespace, isRoot, sh, uniqueName, vethNamespace } from './netns';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Where Debian's nfs-ganesha-vfs puts FSAL_VFS (Ganesha's compiled-in Plugins_Dir). */
const FSAL_VFS_CANDIDATES = ['/usr/lib/x86_64-linux-gnu/ganesha', '/usr/lib/aarch64-linux-gnu/ganesha', '/usr/lib64/ganesha', '/usr/lib/ganesha'].map((d) => path.join(d, 'libfsalvfs.so'));

/** Why a real Ganesha cannot run here (for the skip message), or undefined when it can. */
export function ganeshaUnavailable(): string | undefined {
  if (!isRoot()) return 'needs root (network and mount namespaces, mounts)';
  if (!inTestNamespace()) return 'needs the private test namespace of scripts/mocha-ns.sh';
  for (const c of ['ganesha.nfsd', 'rpcbind', 'rpcinfo', 'nsenter', 'unshare', 'python3']) {
    if (!hasCommand(c)) return `${c} is not installed (scripts/setup.sh installs nfs-ganesha, nfs-ganesha-vfs, rpcbind, util-linux, python3)`;
  }
  if (!FSAL_VFS_CANDIDATES.some((f) => existsSync(f))) return 'FSAL_VFS (libfsalvfs.so) is not installed: apt-get install nfs-ganesha-vfs';
  return undefined;
}

/** A place to run Ganesha: the process whose network and mount namespaces hold the rpcbind it registers with. */
export interface NfsNodeRef {
  /** The node's network namespace name (for `ip netns`). */
  netns: string;
  /** Its address: Ganesha's clients reach it there. */
  address: string;
  /** A process in the node's network and mount namespaces (its rpcbind). */
  anchorPid: number;
}

export interface NfsNode extends NfsNodeRef {
  /** Runs a command in the node's namespaces and returns its stdout. */
  exec(cmd: string, args: string[]): string;
  /** Removes every process of the node, its namespace and its veth. */
  dispose(): Promise<void>;
}

const nsenter = (anchorPid: number, cmd: string, args: string[]): [string, string[]] => ['nsenter', ['-t', String(anchorPid), '-n', '-m', '--', cmd, ...args]];

/** Runs a command in a node's namespaces. */
export function nodeExec(node: NfsNodeRef, cmd: string, args: string[], opts: { allowFail?: boolean } = {}): string {
  const [c, a] = nsenter(node.anchorPid, cmd, args);
  return sh(c, a, opts);
}

/** Starts a long-running process in a node's namespaces (startNfsNode's dispose() kills it with the rest). */
export function nodeSpawn(node: NfsNodeRef, cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  const [c, a] = nsenter(node.anchorPid, cmd, args);
  return spawn(c, a, { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
}

/**
 * A node joined to the current namespace by a veth pair (hostAddress here, address inside), with
 * its own /run and rpcbind. Files and mounts made here before it starts are visible inside it.
 */
export async function startNfsNode(opts: { name?: string; hostAddress?: string; address?: string; prefixLen?: number } = {}): Promise<NfsNode> {
  const hostAddress = opts.hostAddress ?? '10.213.0.1';
  const address = opts.address ?? '10.213.0.2';
  const ns = vethNamespace(hostAddress, address, opts.prefixLen ?? 24, { name: opts.name ?? uniqueName('ldgan') });
  let anchor: ChildProcess | undefined;
  const dispose = async (): Promise<void> => {
    // Everything left in the namespace (Ganesha, rpcbind, strays), then the namespace itself.
    const pids = sh('ip', ['netns', 'pids', ns.name], { allowFail: true }).split(/\s+/).filter(Boolean);
    for (const pid of pids) sh('kill', ['-KILL', pid], { allowFail: true });
    for (let i = 0; i < 100 && pids.some((pid) => existsSync(`/proc/${pid}`)); i++) await sleep(20);
    ns.dispose();
  };
  try {
    anchor = ns.spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs lockdrop-node-run /run && mkdir -p /run/lock /run/rpcbind && exec rpcbind -f -w']);
    const node: NfsNode = { netns: ns.name, address, anchorPid: anchor.pid!, exec: (cmd, args) => nodeExec(node, cmd, args), dispose };
    for (let i = 0; i < 100; i++) {
      if (anchor.exitCode !== null || anchor.signalCode !== null) throw new Error(`rpcbind of node ${ns.name} exited (${anchor.exitCode ?? anchor.signalCode})`);
      if (nodeExec(node, 'rpcinfo', ['-p', '127.0.0.1'], { allowFail: true }).includes('portmapper')) return node;
      await sleep(50);
    }
    throw new Error(`rpcbind of node ${ns.name} did not answer within 5 s`);
  } catch (err) {
    await dispose();
    throw err;
  }
}

export interface GaneshaOptions {
  node: NfsNodeRef;
  /** The directory FSAL_VFS exports (must exist; mounts on it made before the node started). */
  exportPath: string;
  /** Export_Id, the number in every handle. Default 77. */
  exportId?: number;
  /** Bind_Addr. Default 0.0.0.0 (every address of the node, floating ones included). */
  bindAddress?: string;
  /** NFS_Port (default 2049) and MNT_Port (default 0: an ephemeral port, registered with rpcbind). */
  nfsPort?: number;
  mountPort?: number;
  /** Holds the config, log, pid file and recovery directory. Default: a fresh temp dir, removed by stop(). */
  workDir?: string;
  /** More config blocks, appended. */
  extraConfig?: string;
  /** How long to wait for the server to answer. Default 20 s. */
  startTimeoutMs?: number;
  /** Ganesha's own NLM on (Enable_NLM), registered with the node's rpcbind. Default false. */
  nlm?: boolean;
}

export interface Ganesha {
  pid: number;
  node: NfsNodeRef;
  exportId: number;
  exportPath: string;
  /** Ports as registered with the node's rpcbind (mountd's UDP and TCP ports differ). */
  nfsPort: { udp: number; tcp: number };
  mountPort: { udp: number; tcp: number };
  /** NLM v4's ports, with `nlm: true`. */
  nlmPort?: { udp: number; tcp: number };
  configFile: string;
  logFile: string;
  /** Milliseconds from spawn until MOUNT v3 and NFS v3 were registered and the server said it was up. */
  startMs: number;
  /** The log so far (for failure messages). */
  log(): string;
  /** SIGTERM (Ganesha unregisters from rpcbind), SIGKILL after 10 s; then removes its temp dir. Idempotent. */
  stop(): Promise<{ exitCode: number | null; signal: string | null; stopMs: number }>;
}

/** The config: NFSv3 only, no NLM (unless asked), no RQUOTA, no grace, one FSAL_VFS export with squash none. */
export function ganeshaConfig(o: { exportPath: string; exportId: number; bindAddress: string; nfsPort: number; mountPort: number; recoveryRoot: string; extraConfig?: string; nlm?: boolean }): string {
  return `# written by lockdrop's test/support/ganesha.ts
NFS_Core_Param {
\tEnable_NLM = ${o.nlm === true};
\tEnable_RQUOTA = false;
\tProtocols = 3;
\tBind_Addr = ${o.bindAddress};
\tNFS_Port = ${o.nfsPort};
\tMNT_Port = ${o.mountPort};
}
NFSv4 {
\t# No grace period at start (Ganesha's own, 90 s by default); the recovery files stay in our dir.
\tGraceless = true;
\tRecoveryRoot = "${o.recoveryRoot}";
}
NFS_KRB5 { Active_krb5 = false; }
EXPORT {
\tExport_Id = ${o.exportId};
\tPath = "${o.exportPath}";
\tPseudo = "${o.exportPath}";
\tProtocols = 3;
\tTransports = UDP, TCP;
\tAccess_Type = RW;
\tSquash = None;
\tSecType = sys, none;
\tFSAL { Name = VFS; }
}
LOG { Default_Log_Level = EVENT; }
${o.extraConfig ?? ''}
`;
}

/** Parses `rpcinfo -p` for a program/version/protocol's port. */
function registeredPort(rpcinfo: string, prog: number, vers: number, proto: 'udp' | 'tcp'): number | undefined {
  for (const line of rpcinfo.split('\n')) {
    const [p, v, pr, port] = line.trim().split(/\s+/);
    if (Number(p) === prog && Number(v) === vers && pr === proto) return Number(port);
  }
  return undefined;
}

/** Starts ganesha.nfsd in the node; resolves once MOUNT v3 and NFS v3 are registered (UDP and TCP). */
export async function startGanesha(opts: GaneshaOptions): Promise<Ganesha> {
  const why = ganeshaUnavailable();
  if (why !== undefined) throw new Error(`NFS-Ganesha cannot run here: ${why}`);
  if (!existsSync(opts.exportPath)) throw new Error(`export path ${opts.exportPath} does not exist`);
  const ownDir = opts.workDir === undefined;
  const dir = opts.workDir ?? mkdtempSync(path.join(tmpdir(), 'lockdrop-ganesha-'));
  mkdirSync(path.join(dir, 'recovery'), { recursive: true });
  const exportId = opts.exportId ?? 77;
  const configFile = path.join(dir, 'ganesha.conf');
  const logFile = path.join(dir, 'ganesha.log');
  const pidFile = path.join(dir, 'ganesha.pid');
  writeFileSync(configFile, ganeshaConfig({
    exportPath: opts.exportPath,
    exportId,
    bindAddress: opts.bindAddress ?? '0.0.0.0',
    nfsPort: opts.nfsPort ?? 2049,
    mountPort: opts.mountPort ?? 0,
    recoveryRoot: path.join(dir, 'recovery'),
    nlm: opts.nlm === true,
    ...(opts.extraConfig !== undefined ? { extraConfig: opts.extraConfig } : {}),
  }));
  const log = (): string => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '(no log written)');
  // The last lines that matter, without the date/host/pid prefix and the dbus and krb5 noise.
  const tail = (): string => log().split('\n').filter((l) => !/:DBUS :|krb5|keytab|principal/.test(l)).slice(-15).map((l) => l.replace(/^.* : nfs-ganesha-\d+/, '')).join('\n');

  const started = Date.now();
  // nsenter execs ganesha.nfsd (no fork for -n -m): the child's pid is Ganesha's.
  const [cmd, args] = nsenter(opts.node.anchorPid, 'ganesha.nfsd', ['-F', '-L', logFile, '-f', configFile, '-p', pidFile]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => void (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let stopped: Promise<{ exitCode: number | null; signal: string | null; stopMs: number }> | undefined;
  const stop = (): Promise<{ exitCode: number | null; signal: string | null; stopMs: number }> =>
    (stopped ??= (async () => {
      const t0 = Date.now();
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(killer);
      }
      const result = { exitCode: child.exitCode, signal: child.signalCode, stopMs: Date.now() - t0 };
      if (ownDir) rmSync(dir, { recursive: true, force: true });
      return result;
    })());

  try {
    const timeoutMs = opts.startTimeoutMs ?? 20_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`ganesha.nfsd exited at start (${child.exitCode ?? child.signalCode}): ${stderr.trim()}\n${tail()}`);
      }
      const rpcinfo = nodeExec(opts.node, 'rpcinfo', ['-p', '127.0.0.1'], { allowFail: true });
      const ports = (['udp', 'tcp'] as const).flatMap((p) => [registeredPort(rpcinfo, 100005, 3, p), registeredPort(rpcinfo, 100003, 3, p), ...(opts.nlm ? [registeredPort(rpcinfo, 100021, 4, p)] : [])]);
      if (ports.every((p) => p !== undefined) && log().includes('NFS SERVER INITIALIZED')) {
        return {
          pid: child.pid!,
          node: opts.node,
          exportId,
          exportPath: opts.exportPath,
          nfsPort: { udp: registeredPort(rpcinfo, 100003, 3, 'udp')!, tcp: registeredPort(rpcinfo, 100003, 3, 'tcp')! },
          mountPort: { udp: registeredPort(rpcinfo, 100005, 3, 'udp')!, tcp: registeredPort(rpcinfo, 100005, 3, 'tcp')! },
          ...(opts.nlm ? { nlmPort: { udp: registeredPort(rpcinfo, 100021, 4, 'udp')!, tcp: registeredPort(rpcinfo, 100021, 4, 'tcp')! } } : {}),
          configFile,
          logFile,
          startMs: Date.now() - started,
          log,
          stop,
        };
      }
      if (Date.now() - started > timeoutMs) throw new Error(`ganesha.nfsd did not register MOUNT v3 and NFS v3 within ${timeoutMs} ms:\n${rpcinfo}\n${tail()}`);
      await sleep(50);
    }
  } catch (err) {
    await stop();
    throw err;
  }
}
