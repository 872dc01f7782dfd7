// The capabilities lockdropd cannot serve without, checked at start: root has them all; another
// user (or a unit with a narrower bounding set) starts only when it has what the configuration
// needs, and is told which are missing instead of serving locks that fail one by one.
import { readFileSync } from 'node:fs';
import type { Config } from './config';

/** Capability numbers (linux/capability.h). */
const CAPS = { CAP_DAC_READ_SEARCH: 2, CAP_NET_BIND_SERVICE: 10 } as const;
export type CapabilityName = keyof typeof CAPS;

export interface Privileges {
  /** The effective capability set (CapEff of /proc/self/status). */
  effective: bigint;
  /** net.ipv4.ip_unprivileged_port_start: ports below need CAP_NET_BIND_SERVICE. */
  unprivilegedPortStart: number;
}

export interface MissingCapability {
  capability: CapabilityName;
  why: string;
}

/** What the configuration needs and the process lacks; empty when it may start. */
export function missingCapabilities(cfg: Config, p: Privileges): MissingCapability[] {
  const has = (c: CapabilityName): boolean => ((p.effective >> BigInt(CAPS[c])) & 1n) === 1n;
  const out: MissingCapability[] = [];
  const onFiles = cfg.exports.filter((e) => e.fileLocks).map((e) => e.path);
  // The NFS server's exports are locked on their files too, whichever they turn out to be.
  if (cfg.exportsFrom) onFiles.push(`${cfg.exportsFrom.server}'s exports`);
  if (onFiles.length && !has('CAP_DAC_READ_SEARCH')) out.push({ capability: 'CAP_DAC_READ_SEARCH', why: `to lock the files of ${onFiles.join(', ')} with open_by_handle_at, or set fileLocks: false` });
  const low = [cfg.nlmPort, cfg.nsmPort].filter((port) => port > 0 && port < p.unprivilegedPortStart);
  if (low.length && !has('CAP_NET_BIND_SERVICE')) out.push({ capability: 'CAP_NET_BIND_SERVICE', why: `to bind port ${low.join(' and ')}` });
  return out;
}

/** This process's privileges, as the kernel states them. */
export function readPrivileges(): Privileges {
  const status = readFileSync('/proc/self/status', 'utf8');
  const eff = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  let start = 1024;
  try {
    start = Number.parseInt(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8'), 10);
  } catch {
    // not readable here: the traditional 1024
  }
  return { effective: eff ? BigInt(`0x${eff}`) : 0n, unprivilegedPortStart: Number.isFinite(start) ? start : 1024 };
}
