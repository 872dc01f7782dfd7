// Loading the optional native addon. A missing or broken build is not an error of lockdrop: it
// is reported as AddonUnavailable (with the reason) and lockdrop runs on polling alone.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

/** One answer of a feature probe. */
export type FeatureAnswer = { supported: true } | { supported: false; reason: string };

export interface NativeProgramInfo { name: string; section: string; type: string; autoload: boolean; attached: boolean }
export interface NativeMapInfo { name: string; type: string }

/** The shape of native/src/*.cc's exports (internal: use the wrappers in this folder). */
export interface NativeAddon {
  RtnetlinkSocket: new (groups: number, rcvbuf: number, onItems: (items: Array<Buffer | string>) => void) => {
    start(): void;
    stop(): void;
    close(): void;
    receiveBufferSize(): number;
  };
  rtnetlinkDump(request: Buffer, done: (err: Error | null, replies: Buffer[]) => void): void;
  rtnetlinkGroups: { link: number; ipv4Ifaddr: number; ipv6Ifaddr: number };
  BpfObject: new (path: string) => {
    programs(): NativeProgramInfo[];
    maps(): NativeMapInfo[];
    setAutoload(program: string, load: boolean): void;
    setReadOnly(variable: string, value: Buffer): void;
    readGlobal(variable: string): Buffer;
    setMaxEntries(map: string, entries: number): void;
    load(): void;
    attach(program: string): void;
    openRingBuffer(map: string, onRecords: (records: Buffer[], error: string | null) => void): number;
    closeRingBuffer(id: number): void;
    close(): void;
  };
  mountTracefs(): boolean;
  bpfRunTimeStats(on: boolean): void;
  probeFeatures(fentryFunction?: string): Record<'btf' | 'ringbuf' | 'tracepoint' | 'fentry' | 'kprobe', FeatureAnswer>;
  // native/src/files.cc and ofd_wait.cc (wrapped by files.ts): results below 0 are -errno.
  nameToHandle(path: string): { type: number; handle: Buffer; mountId: number };
  openPath(path: string): number;
  openByHandle(mountFd: number, type: number, handle: Buffer, readWrite: boolean): number;
  openRegular(mountFd: number, type: number, handle: Buffer, readWrite: boolean): number;
  openLock(mountFd: number, type: number, handle: Buffer, readWrite: boolean, lockType: 0 | 1, start: number | bigint, len: number | bigint): number;
  checkHandle(mountFd: number, type: number, handle: Buffer, forWrite?: boolean): number;
  handleOwner(mountFd: number, type: number, handle: Buffer): { mode: number; uid: number; gid: number } | number;
  lockRefused: number;
  releaseFds(fds: Int32Array, threads: number): number;
  closesPending(): number;
  awaitCloses(): void;
  fileType(fd: number): number;
  filesystemId(fd: number): { fsid: Buffer; devMajor: number; devMinor: number };
  closeFd(fd: number): void;
  ofdSetLock(fd: number, type: 0 | 1 | 2, start: number | bigint, len: number | bigint): number;
  ofdGetLock(fd: number, type: 0 | 1, start: number | bigint, len: number | bigint): null | { exclusive: boolean; start: number | bigint; len: number | bigint; pid: number };
  ofdWait(fd: number, type: 0 | 1, start: number | bigint, len: number | bigint, done: (result: number) => void): number;
  ofdCancelWait(id: number): boolean;
  ofdCancelAll(): number;
  setWaitPoolSize(n: number): void;
  waitPoolStats(): { size: number; busy: number; pending: number };
  nofileLimit(): { soft: number; hard: number };
  raiseNofileLimit(): { soft: number; hard: number };
  // native/src/notify.cc (wrapped by notify.ts)
  sendNotify(socket: string, message: string): void;
  // native/src/fdstore.cc (wrapped by fdstore.ts)
  sendNotifyFds(socket: string, message: string, fds: Int32Array): void;
  bindNotifySocket(path: string): number;
  receiveNotify(fd: number): { message: string; fds: Int32Array; pid: number } | null;
  memfdCreate(name: string): number;
  setCloexec(fd: number, on: boolean): void;
  // native/src/peercred.cc (wrapped by peercred.ts)
  peerCredentials(fd: number): { pid: number; uid: number; gid: number };
  // native/src/neighbours.cc (wrapped by neighbours.ts)
  announceAddress(device: string, address: string): void;
}

/** The addon cannot be used here; `reason` says why (not built, not Linux, forced off, load error). */
export class AddonUnavailable extends Error {
  override readonly name = 'AddonUnavailable';
  constructor(readonly reason: string) {
    super(`native addon unavailable: ${reason}`);
  }
}

/** The repository root: this file lives two levels down both as src/addon/*.ts and dist/addon/*.js. */
export const packageRoot = resolve(__dirname, '..', '..');
export const addonPath = resolve(packageRoot, 'native', 'build', 'Release', 'lockdrop.node');

let cached: NativeAddon | AddonUnavailable | undefined;

function tryLoad(): NativeAddon | AddonUnavailable {
  // LOCKDROP_NO_ADDON=1 forces the fallback (tests and operators checking polling alone).
  if (process.env.LOCKDROP_NO_ADDON === '1') return new AddonUnavailable('disabled by LOCKDROP_NO_ADDON=1');
  if (process.platform !== 'linux') return new AddonUnavailable(`not Linux (${process.platform})`);
  if (!existsSync(addonPath)) return new AddonUnavailable(`not built (${addonPath} missing: run npm run build:native)`);
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(addonPath) as NativeAddon;
  } catch (err) {
    return new AddonUnavailable(`failed to load ${addonPath}: ${(err as Error).message}`);
  }
}

/** The addon, or throws AddonUnavailable. The outcome is cached. */
export function loadAddon(): NativeAddon {
  cached ??= tryLoad();
  if (cached instanceof AddonUnavailable) throw cached;
  return cached;
}

/** Whether the addon can be used, without throwing. */
export function addonStatus(): { available: true } | { available: false; reason: string } {
  try {
    loadAddon();
    return { available: true };
  } catch (err) {
    return { available: false, reason: err instanceof AddonUnavailable ? err.reason : String(err) };
  }
}
