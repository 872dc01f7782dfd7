// A small eBPF library over libbpf (through the addon): open → configure → load → attach → read.
//   const obj = BpfObject.open('dist/bpf/x.bpf.o');
//   obj.setReadOnly('target_netns', u32(ino)); obj.load(); obj.attachAll();
//   obj.ringBuffer('events').subscribe(record => …); … obj.close();
// Programs whose type this kernel does not support are left out at load with the reason, so one
// refused program type does not sink the whole object. Loading mounts tracefs where it is missing:
// the one change to the machine this library makes.
import { Observable, type Subscriber } from 'rxjs';
import { loadAddon, type FeatureAnswer, type NativeAddon } from './native';

export type FeatureName = 'btf' | 'ringbuf' | 'tracepoint' | 'fentry' | 'kprobe';
export type Features = Record<FeatureName, FeatureAnswer>;

/** A feature (or program) this kernel or process cannot use: what, and why. */
export class BpfUnsupported extends Error {
  override readonly name = 'BpfUnsupported';
  constructor(readonly what: string, readonly reason: string) {
    super(`unsupported: ${what}: ${reason}`);
  }
}

let features: Features | undefined;
let tracefs: { error?: string } | undefined;

/**
 * Mounts tracefs on /sys/kernel/tracing where no tracefs is mounted (needs root): libbpf attaches
 * tracepoints through it. Tried once per process; returns why it could not, or undefined.
 */
export function mountTracefs(): string | undefined {
  if (!tracefs) {
    const addon = loadAddon();
    try {
      // Tracepoints were unattachable before this mount: probe them again.
      if (addon.mountTracefs()) features = undefined;
      tracefs = {};
    } catch (err) {
      tracefs = { error: (err as Error).message };
    }
  }
  return tracefs.error;
}

/**
 * What this kernel lets us load, probed once and cached: tracepoint, tracing (fentry, by loading
 * and attaching a trivial program on __inet_del_ifa, the removal probe's function), kprobe,
 * kernel BTF, ring buffers; each supported or the reason it is not. It only looks: tracepoints
 * count as supported once tracefs is there (mountTracefs).
 */
export function probeFeatures(): Features {
  if (features) return features;
  const probed = loadAddon().probeFeatures('__inet_del_ifa');
  const mountError = tracefs?.error;
  if (!probed.tracepoint.supported && mountError) probed.tracepoint = { supported: false, reason: `${probed.tracepoint.reason} (${mountError})` };
  features = probed;
  return features;
}

/** Throws BpfUnsupported unless the feature is there. */
export function requireFeature(name: FeatureName): void {
  const f = probeFeatures()[name];
  if (!f.supported) throw new BpfUnsupported(name, f.reason);
}

/**
 * Turns the kernel's per-program run statistics on or off (run_cnt and run_time_ns, as
 * `bpftool prog show` prints them; the kernel keeps them while any process has them on). They
 * cost a little on every run: for benchmarks and diagnosis.
 */
export const bpfRunTimeStats = (on: boolean): void => loadAddon().bpfRunTimeStats(on);

/** The feature a program type needs (libbpf's type names). */
const FEATURE_OF_TYPE: Record<string, FeatureName> = { tracepoint: 'tracepoint', tracing: 'fentry', kprobe: 'kprobe' };

export interface ProgramInfo {
  name: string;
  section: string;
  /** libbpf's program type name: tracepoint, tracing (fentry/fexit), kprobe, … */
  type: string;
}

/** One program's fate: attached, or left out with the reason (unsupported here, or failed). */
export type ProgramStatus =
  | (ProgramInfo & { status: 'attached' })
  | (ProgramInfo & { status: 'unsupported' | 'disabled' | 'failed'; reason: string });

/** Little-endian encodings for setReadOnly. */
export const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};

type NativeObject = InstanceType<NativeAddon['BpfObject']>;

export class BpfObject {
  private readonly left = new Map<string, { status: 'unsupported' | 'disabled' | 'failed'; reason: string }>();
  private readonly readers = new Set<{ id: number; subscriber: Subscriber<Buffer> }>();
  private state: 'opened' | 'loaded' | 'closed' = 'opened';

  private constructor(private readonly native: NativeObject, readonly path: string) {}

  /** Opens (parses) an object file. Throws AddonUnavailable without the addon, an Error (with libbpfLog) on a bad file. */
  static open(path: string): BpfObject {
    return new BpfObject(new (loadAddon().BpfObject)(path), path);
  }

  programs(): ProgramInfo[] {
    return this.native.programs().map(({ name, section, type }) => ({ name, section, type }));
  }

  maps(): Array<{ name: string; type: string }> {
    return this.native.maps();
  }

  /** Sets a `const volatile` global (in .rodata) before load; the value's size must match. */
  setReadOnly(variable: string, value: Buffer): this {
    this.native.setReadOnly(variable, value);
    return this;
  }

  /** Sets a map's size before load (for a ring buffer: bytes, a power-of-two number of pages). */
  setMaxEntries(map: string, entries: number): this {
    this.native.setMaxEntries(map, entries);
    return this;
  }

  /** A global variable's current bytes (.bss/.data/.rodata): after load, read live from the kernel's map. */
  readGlobal(variable: string): Buffer {
    return this.native.readGlobal(variable);
  }

  /** Leaves a program out of the load (e.g. an alternative to one that is used instead). */
  disable(program: string, reason: string): this {
    this.native.setAutoload(program, false);
    this.left.set(program, { status: 'disabled', reason });
    return this;
  }

  /**
   * Loads the programs and maps into the kernel. Mounts tracefs first where it is missing (see
   * mountTracefs). Programs of a type this kernel does not support are left out (attachAll reports
   * them as unsupported, with the feature probe's reason).
   */
  load(): this {
    mountTracefs();
    const f = probeFeatures();
    for (const p of this.programs()) {
      const feature = FEATURE_OF_TYPE[p.type];
      const answer = feature ? f[feature] : undefined;
      if (answer && !answer.supported && !this.left.has(p.name)) {
        this.native.setAutoload(p.name, false);
        this.left.set(p.name, { status: 'unsupported', reason: `${feature}: ${answer.reason}` });
      }
    }
    this.native.load();
    this.state = 'loaded';
    return this;
  }

  /** Attaches every loaded program by its section; reports each program's status, never throws for one program. */
  attachAll(): ProgramStatus[] {
    if (this.state !== 'loaded') throw new Error(`attachAll needs a loaded object (this one is ${this.state})`);
    return this.programs().map((p): ProgramStatus => {
      const left = this.left.get(p.name);
      if (left) return { ...p, ...left };
      try {
        this.native.attach(p.name);
        return { ...p, status: 'attached' };
      } catch (err) {
        return { ...p, status: 'failed', reason: (err as Error).message };
      }
    });
  }

  /**
   * A ring buffer map's records. Cold: each subscription reads through its own libbpf
   * ring_buffer (epoll fd polled on the libuv loop); unsubscribing closes it; close() completes it.
   */
  ringBuffer(map: string): Observable<Buffer> {
    return new Observable<Buffer>((subscriber) => {
      if (this.state === 'closed') return subscriber.error(new Error('bpf object closed'));
      const id = this.native.openRingBuffer(map, (records, error) => {
        for (const r of records) subscriber.next(r);
        if (error) subscriber.error(new Error(`ring buffer ${map}: ${error}`));
      });
      const reader = { id, subscriber };
      this.readers.add(reader);
      return () => {
        if (!this.readers.delete(reader)) return;
        this.native.closeRingBuffer(reader.id);
      };
    });
  }

  /** Detaches every program, closes ring buffers, maps and programs. Idempotent. */
  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    const readers = [...this.readers];
    this.readers.clear();
    this.native.close();
    for (const r of readers) r.subscriber.complete();
  }
}
