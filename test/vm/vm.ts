// A Linux NFS client for the tests: Debian bookworm's kernel in QEMU, booted from an initramfs
// built here (busybox and the modules the client needs, by their modules.dep closure), running
// the host's own tree (9p, read-only, under a tmpfs overlay): its rpcbind, rpc.statd, sm-notify,
// mount.nfs, and guest/agent.pl, which the test drives over a virtio serial port.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { ganeshaUnavailable } from '../support/ganesha';
import { hasCommand, isRoot, inTestNamespace, sh } from '../support/netns';

export const REPO = path.resolve(__dirname, '..', '..');
const GUEST = path.join(__dirname, 'guest');
/** Where test/vm/fetch-kernel.sh unpacked the kernel (`current` → the version in use). */
export const CACHE = process.env.LOCKDROP_VM_CACHE ?? path.join(REPO, '.cache', 'vm');
const BUSYBOX = '/bin/busybox';
/** What the guest loads, in this order (each after its modules.dep closure). */
const MODULES = ['virtio_pci', 'virtio_net', 'virtio_console', '9pnet_virtio', '9p', 'overlay', 'nfsv3'];
/** How long KVM gets to print the kernel's first line before the guest boots under TCG instead. */
const KVM_PROBE_MS = 6_000;

export interface Kernel {
  version: string;
  vmlinuz: string;
  /** lib/modules/VERSION of the unpacked package. */
  modules: string;
}

export function findKernel(): Kernel | string {
  const current = path.join(CACHE, 'current');
  if (!existsSync(path.join(current, 'ok'))) return `no unpacked kernel in ${CACHE} (bash test/vm/fetch-kernel.sh fetches it with apt-get download)`;
  const version = path.basename(realpathSync(current));
  const vmlinuz = path.join(current, 'tree', 'boot', `vmlinuz-${version}`);
  const modules = path.join(current, 'tree', 'lib', 'modules', version);
  if (!existsSync(vmlinuz) || !existsSync(path.join(modules, 'modules.dep'))) return `the kernel tree in ${current} is incomplete (no vmlinuz or modules.dep)`;
  return { version, vmlinuz, modules };
}

/** Why the VM test cannot run here (each missing piece named), or undefined when it can. */
export function whyNotRunnable(): string | undefined {
  if (!isRoot()) return 'not root: the VM test builds namespaces, a bridge and a tap device';
  if (!inTestNamespace()) return 'not inside the test namespace (run it through scripts/mocha-ns.sh: npm run test:vm)';
  const ganesha = ganeshaUnavailable();
  if (ganesha) return `NFS-Ganesha: ${ganesha}`;
  const missing = ['qemu-system-x86_64', 'rpc.statd', 'sm-notify', 'mount.nfs', 'perl', 'tshark'].filter((c) => !hasCommand(c));
  if (!existsSync(BUSYBOX)) missing.push(`${BUSYBOX} (busybox-static)`);
  if (!existsSync('/dev/net/tun')) missing.push('/dev/net/tun');
  if (!existsSync('/usr/lib/ocf/resource.d/heartbeat/IPaddr2')) missing.push("resource-agents' IPaddr2");
  if (missing.length) return `missing: ${missing.join(', ')} (bash scripts/setup.sh installs them as root)`;
  const k = findKernel();
  return typeof k === 'string' ? k : undefined;
}

/** Relative paths of the modules wanted and their dependencies, each after what it needs. */
export function moduleClosure(modulesDep: string, wanted: readonly string[]): string[] {
  const byName = new Map<string, { file: string; deps: string[] }>();
  const nameOf = (file: string): string => path.basename(file).replace(/\.ko(\.[a-z]+)?$/, '').replace(/-/g, '_');
  for (const line of modulesDep.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const file = line.slice(0, colon);
    byName.set(nameOf(file), { file, deps: line.slice(colon + 1).trim().split(/\s+/).filter(Boolean) });
  }
  const order: string[] = [];
  const visit = (file: string, trail: string[]): void => {
    if (order.includes(file)) return;
    if (trail.includes(file)) throw new Error(`modules.dep has a cycle: ${[...trail, file].join(' → ')}`);
    const m = byName.get(nameOf(file));
    if (!m) throw new Error(`modules.dep has no ${file}`);
    for (const d of m.deps) visit(d, [...trail, file]);
    order.push(m.file);
  };
  for (const w of wanted) {
    const m = byName.get(w);
    if (!m) throw new Error(`the kernel has no module ${w} (built in? then drop it from the list)`);
    visit(m.file, []);
  }
  return order;
}

interface CpioEntry { name: string; mode: number; data?: Buffer }

/** An archive in the kernel's initramfs format (cpio "newc", uncompressed). */
export function newc(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  const pad = (n: number): Buffer => Buffer.alloc((4 - (n % 4)) % 4);
  const hex = (n: number): string => n.toString(16).padStart(8, '0');
  let ino = 1;
  for (const e of [...entries, { name: 'TRAILER!!!', mode: 0 }]) {
    const data = e.data ?? Buffer.alloc(0);
    const name = Buffer.from(`${e.name}\0`);
    const fields = [ino++, e.mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, name.length, 0];
    const header = Buffer.from(`070701${fields.map(hex).join('')}`);
    parts.push(header, name, pad(header.length + name.length), data, pad(data.length));
  }
  return Buffer.concat(parts);
}

/** Writes the guest's initramfs (busybox, the modules, guest/initramfs-init as /init) to `out`. */
export function buildInitramfs(kernel: Kernel, out: string, modules: readonly string[] = MODULES): void {
  const files = moduleClosure(readFileSync(path.join(kernel.modules, 'modules.dep'), 'utf8'), modules);
  const entries: CpioEntry[] = [];
  const dirs = new Set<string>(['bin', 'dev', 'proc', 'sys', 'lib', 'lib/modules']);
  for (const f of files) for (let d = path.dirname(`lib/modules/${f}`); d !== '.'; d = path.dirname(d)) dirs.add(d);
  for (const d of [...dirs].sort()) entries.push({ name: d, mode: 0o040755 });
  entries.push({ name: 'bin/busybox', mode: 0o100755, data: readFileSync(BUSYBOX) });
  entries.push({ name: 'init', mode: 0o100755, data: readFileSync(path.join(GUEST, 'initramfs-init')) });
  entries.push({ name: 'modules.load', mode: 0o100644, data: Buffer.from(files.map((f) => `/lib/modules/${f}\n`).join('')) });
  for (const f of files) entries.push({ name: `lib/modules/${f}`, mode: 0o100644, data: readFileSync(path.join(kernel.modules, f)) });
  writeFileSync(out, newc(entries));
}

/** Speaks guest/agent.pl's line protocol over any pair of streams. */
export class Agent {
  private seq = 0;
  private readonly pending = new Map<number, (reply: string) => void>();
  ready: Promise<void>;
  private markReady!: () => void;

  constructor(private readonly write: (line: string) => void, input: NodeJS.ReadableStream, readonly what: string) {
    this.ready = new Promise((resolve) => (this.markReady = resolve));
    createInterface({ input }).on('line', (raw) => {
      const line = raw.replace(/\r$/, '');
      const sp = line.indexOf(' ');
      const id = Number(line.slice(0, sp));
      if (id === 0) return this.markReady();
      this.pending.get(id)?.(line.slice(sp + 1));
      this.pending.delete(id);
    });
  }

  /** Sends one request; resolves with the reply after its id ("ok …" or "err ERRNO"). */
  request(words: string, timeoutMs = 30_000): Promise<string> {
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.what}: no reply to "${words}" within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, (reply) => (clearTimeout(timer), resolve(reply)));
      this.write(`${id} ${words}\n`);
    });
  }

  /** Runs a shell command; resolves with its exit code and output. */
  async sh(cmd: string, timeoutMs = 30_000): Promise<{ rc: number; out: string }> {
    const reply = await this.request(`sh ${Buffer.from(cmd).toString('hex')}`, timeoutMs);
    const m = /^ok (\d+) ?([0-9a-f]*)$/.exec(reply);
    if (!m) throw new Error(`${this.what}: sh ${cmd}: ${reply}`);
    return { rc: Number(m[1]), out: Buffer.from(m[2]!, 'hex').toString() };
  }

  /** A lock-holding process of its own: its own lock owner (Linux's lockd gives it its own svid). */
  async holder(name: string, file: string): Promise<Holder> {
    const pid = Number(expectOk(await this.request(`spawn ${name}`), `spawn ${name}`));
    expectOk(await this.request(`${name} open ${file}`), `${name} open ${file}`);
    return new Holder(this, name, pid);
  }
}

const expectOk = (reply: string, what: string): string => {
  if (!reply.startsWith('ok')) throw new Error(`${what}: ${reply}`);
  return reply.slice(3);
};

/** One process holding fcntl locks on one open file. */
export class Holder {
  constructor(private readonly agent: Agent, readonly name: string, readonly pid: number) {}

  /** "ok" or "err ERRNO"; `wait` uses F_SETLKW (the promise settles when the kernel answers). */
  lock(start: number, len: number, opts: { wait?: boolean; timeoutMs?: number } = {}): Promise<string> {
    return this.agent.request(`${this.name} lock w ${start} ${len} ${opts.wait ? 1 : 0}`, opts.timeoutMs);
  }

  unlock(start: number, len: number): Promise<string> {
    return this.agent.request(`${this.name} unlock ${start} ${len}`);
  }

  /** F_GETLK: "ok free" or "ok held w|r START LEN PID". */
  test(start: number, len: number): Promise<string> {
    return this.agent.request(`${this.name} test w ${start} ${len}`);
  }

  async kill(signal = 'KILL'): Promise<void> {
    expectOk(await this.agent.request(`kill ${this.name} ${signal}`), `kill ${this.name}`);
  }
}

export interface GuestOptions {
  kernel: Kernel;
  initrd: string;
  /** The network namespace holding the bridge the guest's tap joins. */
  netns: string;
  bridge: string;
  tap: string;
  mac: string;
  hostname: string;
  /** address/prefix on the guest's eth0. */
  address: string;
  /** What the guest mounts at /mnt/nfs at boot (NFSv3 over TCP). */
  server: string;
  exportPath: string;
  /** Host folder shared read-write as the guest's /var/lib/nfs (its NSM state survives reboots). */
  nfsState: string;
  /** Per-boot files (control socket, console log). */
  workDir: string;
  /** The boot script in guest/ (default boot.sh, the client's). */
  boot?: string;
  /** A raw disk image the guest sees as /dev/vda. */
  disk?: string;
  memoryMb?: number;
  /** More of the kernel command line (lockdrop.NAME=VALUE for the boot script). */
  append?: string[];
}

let kvmVerdict: string | undefined;
let boots = 0;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A booted guest whose agent answers. */
export class Guest {
  private exitCode: number | null = null;
  readonly exited: Promise<number | null>;

  /** `console`: every line the guest printed on its serial console so far (and still to come). */
  private constructor(readonly opts: GuestOptions, readonly accel: 'kvm' | 'tcg', private readonly qemu: ChildProcess, readonly agent: Agent, private readonly socket: net.Socket, readonly console: string[]) {
    this.exited = new Promise((resolve) => qemu.once('exit', (code) => resolve((this.exitCode = code))));
  }

  /** Why KVM was not used (undefined: it was, or has not been tried yet). */
  static get kvmVerdict(): string | undefined { return kvmVerdict; }

  /** Boots the guest, KVM first where /dev/kvm works and starts a kernel, else TCG. */
  static async boot(opts: GuestOptions): Promise<Guest> {
    if (kvmVerdict === undefined) {
      try {
        accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
      } catch {
        kvmVerdict = 'no usable /dev/kvm';
      }
    }
    if (kvmVerdict === undefined || kvmVerdict === 'works') {
      const g = await Guest.start(opts, 'kvm', KVM_PROBE_MS).catch((err: Error) => {
        kvmVerdict = err.message.replace(/\s+/g, ' ');
        return undefined;
      });
      if (g) {
        kvmVerdict = 'works';
        return g;
      }
    }
    const g = await Guest.start(opts, 'tcg');
    if (!g) throw new Error('unreachable');
    return g;
  }

  private static async start(opts: GuestOptions, accel: 'kvm' | 'tcg', firstLineWithinMs?: number): Promise<Guest> {
    const sock = path.join(opts.workDir, 'agent.sock');
    const append = [
      'console=ttyS0', 'loglevel=6', 'panic=-1', 'net.ifnames=0',
      `lockdrop.boot=${path.join(GUEST, opts.boot ?? 'boot.sh')}`, `lockdrop.repo=${REPO}`, `lockdrop.agent=${path.join(GUEST, 'agent.pl')}`,
      `lockdrop.host=${opts.hostname}`, `lockdrop.addr=${opts.address}`, `lockdrop.server=${opts.server}`, `lockdrop.export=${opts.exportPath}`,
      ...(opts.append ?? []),
    ].join(' ');
    const args = [
      'netns', 'exec', opts.netns, 'qemu-system-x86_64',
      '-accel', accel, ...(accel === 'kvm' ? ['-cpu', 'host'] : []), '-m', String(opts.memoryMb ?? 768), '-smp', '1',
      '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
      '-chardev', 'stdio,id=con,signal=off', '-serial', 'chardev:con',
      '-kernel', opts.kernel.vmlinuz, '-initrd', opts.initrd, '-append', append,
      '-fsdev', 'local,id=root,path=/,security_model=none,readonly=on,multidevs=remap', '-device', 'virtio-9p-pci,fsdev=root,mount_tag=hostroot',
      '-fsdev', `local,id=nfsstate,path=${opts.nfsState},security_model=none`, '-device', 'virtio-9p-pci,fsdev=nfsstate,mount_tag=nfsstate',
      '-netdev', `tap,id=n0,ifname=${opts.tap},script=no,downscript=no`, '-device', `virtio-net-pci,netdev=n0,mac=${opts.mac}`,
      ...(opts.disk ? ['-drive', `file=${opts.disk},format=raw,if=virtio,cache=unsafe`] : []),
      '-device', 'virtio-serial', '-chardev', `socket,id=ctl,path=${sock},server=on,wait=off`, '-device', 'virtserialport,chardev=ctl,name=ctl',
    ];
    const qemu = spawn('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    let stderr = '';
    const logFile = path.join(opts.workDir, `console-${++boots}-${accel}.log`);
    createInterface({ input: qemu.stdout! }).on('line', (l) => void lines.push(l));
    qemu.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    let exited = false;
    qemu.once('exit', () => {
      exited = true;
      writeFileSync(logFile, `${lines.join('\n')}\n${stderr}`);
    });
    const fail = async (why: string): Promise<never> => {
      if (!exited) {
        qemu.kill('SIGKILL');
        await new Promise((r) => qemu.once('exit', r));
      }
      throw new Error(`${accel}: ${why}; console: ${lines.slice(-8).join(' | ')} ${stderr.trim()}`);
    };
    const until = async (what: string, ok: () => boolean, ms: number): Promise<void> => {
      const end = Date.now() + ms;
      while (!ok()) {
        if (exited) await fail(`qemu exited before ${what}`);
        if (Date.now() > end) await fail(`no ${what} within ${ms} ms`);
        await sleep(50);
      }
    };
    await until('tap device', () => sh('ip', ['-n', opts.netns, 'link', 'show', opts.tap], { allowFail: true }) !== '', 10_000);
    try {
      sh('ip', ['-n', opts.netns, 'link', 'set', opts.tap, 'master', opts.bridge, 'up']);
    } catch (err) {
      await sleep(200); // qemu may be dying with its tap: its own words say more
      await fail(String(err).trim());
    }
    if (firstLineWithinMs) await until('kernel line', () => lines.some((l) => l.includes('Linux version')), firstLineWithinMs);
    await until('agent socket', () => existsSync(sock), 10_000);
    const socket = net.connect(sock);
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject)).catch((err: Error) => fail(`agent socket: ${err.message}`));
    const agent = new Agent((l) => void socket.write(l), socket, `guest ${opts.hostname}`);
    let ready = false;
    void agent.ready.then(() => (ready = true));
    const booted = lines.length;
    await until('agent (boot script and NFS mount)', () => ready || lines.slice(booted).some((l) => l.includes('lockdrop-vm: FAILED')), 120_000);
    if (!ready) await fail('the boot script failed');
    return new Guest(opts, accel, qemu, agent, socket, lines);
  }

  /** Pulls the plug: the guest dies without unlocking or unmounting anything. */
  async crash(): Promise<void> {
    this.socket.destroy();
    if (this.exitCode === null && this.qemu.signalCode === null) this.qemu.kill('SIGKILL');
    await this.exited;
  }
}
