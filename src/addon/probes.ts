// lockdrop's own probes (bpf/lockdrop.bpf.c) on top of the BpfObject library: which programs to
// use on this kernel, the netns filter, and the ring buffer's records (struct lockdrop_event;
// decoding them is src/watch's, as for rtnetlink datagrams).
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Observable } from 'rxjs';
import { BpfObject, BpfUnsupported, mountTracefs, probeFeatures, requireFeature, u32, type ProgramStatus } from './bpf';
import { packageRoot } from './native';

export const probeObjectPath = resolve(packageRoot, 'dist', 'bpf', 'lockdrop.bpf.o');

export interface LockdropProbesOptions {
  /** Network namespace inode to watch (0: all). Default: this process's namespace. */
  netns?: number;
  objectPath?: string;
  /** Ring buffer size in bytes (a power-of-two number of pages; default 256 KiB). */
  ringBufferBytes?: number;
}

export interface LockdropProbes {
  /** The `events` ring buffer's records, one struct lockdrop_event (bpf/event.h) each. */
  records$: Observable<Buffer>;
  /** Each program: attached, or why not (e.g. fentry unsupported here). */
  programs: ProgramStatus[];
  /** Events the probes dropped so far because the ring buffer was full. */
  lostEvents(): number;
  close(): void;
}

/** This process's network namespace inode (what the probes compare sockets against). */
export const currentNetns = (): number => statSync('/proc/self/ns/net').ino;

/**
 * Loads and attaches lockdrop's probes (mounting tracefs where it is missing). The netlink intent
 * (tracepoints) is required; kernel removal uses fentry where allowed, else kprobe, else is left
 * out with the reason. Throws AddonUnavailable or BpfUnsupported when the probes cannot run at all.
 */
export function openLockdropProbes(options: LockdropProbesOptions = {}): LockdropProbes {
  const path = options.objectPath ?? probeObjectPath;
  if (!existsSync(path)) throw new BpfUnsupported('probe object', `${path} missing (npm run build:bpf)`);
  mountTracefs();
  for (const f of ['btf', 'ringbuf', 'tracepoint'] as const) requireFeature(f);
  const features = probeFeatures();
  const obj = BpfObject.open(path);
  try {
    obj.setReadOnly('target_netns', u32(options.netns ?? currentNetns()));
    if (options.ringBufferBytes !== undefined) obj.setMaxEntries('events', options.ringBufferBytes);
    // fentry and kprobe programs watch the same functions: use one family only.
    const removal = features.fentry.supported ? 'tracing' : features.kprobe.supported ? 'kprobe' : undefined;
    for (const p of obj.programs()) {
      if (removal && (p.type === 'tracing' || p.type === 'kprobe') && p.type !== removal) obj.disable(p.name, `${removal === 'tracing' ? 'fentry' : 'kprobe'} used instead`);
    }
    obj.load();
    const programs = obj.attachAll();
    const failed = programs.filter((p) => p.type === 'tracepoint' && p.status !== 'attached');
    if (failed.length) throw new BpfUnsupported('tracepoint', failed.map((p) => `${p.name}: ${'reason' in p ? p.reason : ''}`).join('; '));
    return {
      records$: obj.ringBuffer('events'),
      programs,
      lostEvents: () => Number(obj.readGlobal('lost_events').readBigUInt64LE(0)),
      close: () => obj.close(),
    };
  } catch (err) {
    obj.close();
    throw err;
  }
}
