// Before the first SM_NOTIFY from an address that just arrived, its neighbours learn its new
// link-layer address: a gratuitous ARP (IPv4) or an unsolicited neighbour advertisement (IPv6),
// what resource-agents' IPaddr2 sends with its send_arp and send_ua. Without it a client's answer
// to the first exchange goes to the node that had the address, and is lost.
//
// Node has no raw sockets: the native addon sends both at once (src/addon announceAddress, well
// under a millisecond). Without it this runs a tool — resource-agents' send_arp / send_ua when
// installed, else iputils' arping / ndisc6's ndsend — whose start and exit hold the first
// SM_NOTIFY back 60-90 ms. With neither, or for an address on no interface that has neighbours,
// it logs once and goes on: the notices still go out, later exchanges still work.
import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import { familyOf, isLoopback, normaliseAddress } from '../net';
import { AddonUnavailable, announceAddress } from '../addon';

/** Where an address lives: its interface (IPv4 labels stripped) and prefix length. */
export interface AddressInterface {
  device: string;
  prefixLen: number;
}

/** The interface holding a local address, from getifaddrs; undefined when none (or loopback). */
export function interfaceOf(address: string): AddressInterface | undefined {
  const want = normaliseAddress(address);
  for (const [name, list] of Object.entries(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.internal || normaliseAddress(a.address) !== want) continue;
      return { device: name.split(':')[0]!, prefixLen: Number(a.cidr?.split('/')[1] ?? (a.family === 'IPv4' ? 32 : 128)) };
    }
  }
  return undefined;
}

const RA_BIN = ['/usr/libexec/heartbeat', '/usr/lib/heartbeat'];
const PATH_BIN = ['/usr/sbin', '/usr/bin', '/sbin', '/bin'];

const findTool = (name: string, dirs: readonly string[]): string | undefined => {
  for (const d of dirs) {
    const p = path.join(d, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
};

/** The command that announces an address, or undefined when no tool for its family is installed. */
export function announceCommand(address: string, where: AddressInterface): string[] | undefined {
  if (familyOf(address) === 4) {
    const sendArp = findTool('send_arp', RA_BIN);
    // One request and one reply (some hosts heed only one of them), 10 ms apart.
    if (sendArp) return [sendArp, '-i', '20', '-r', '1', '-p', path.join(tmpdir(), `lockdrop-send_arp-${address}.pid`), where.device, address, 'auto', 'not_used', 'not_used'];
    const arping = findTool('arping', PATH_BIN);
    if (arping) return [arping, '-q', '-U', '-c', '1', '-I', where.device, address];
    return undefined;
  }
  const sendUa = findTool('send_ua', RA_BIN);
  if (sendUa) return [sendUa, '-i', '20', '-c', '1', address, String(where.prefixLen), where.device];
  const ndsend = findTool('ndsend', PATH_BIN);
  if (ndsend) return [ndsend, address, where.device];
  return undefined;
}

export interface NeighbourAnnouncerOptions {
  log?: Logger;
  /** Longest wait for the tool. Default 2 s. */
  timeoutMs?: number;
  /** Finds the address's interface (tests inject one). Default interfaceOf. */
  interfaceOf?: (address: string) => AddressInterface | undefined;
  /** 'addon' sends from this process, falling back to a tool without the addon; 'tool' always spawns one. Default 'addon'. */
  via?: 'addon' | 'tool';
}

/** An `announce` for RpcNsmSender: resolves once the tool has sent (or failed, or is absent); never rejects. */
export function neighbourAnnouncer(opts: NeighbourAnnouncerOptions = {}): (address: string) => Promise<void> {
  let warnedMissing = false;
  let native = opts.via !== 'tool';
  const find = opts.interfaceOf ?? interfaceOf;
  return async (address) => {
    if (isLoopback(address)) return;
    const where = find(address);
    if (!where) {
      opts.log?.debug({ address }, 'nsm: address on no interface, nothing to announce');
      return;
    }
    if (native) {
      try {
        announceAddress(where.device, address);
        opts.log?.debug({ address, device: where.device }, 'nsm: address announced to its neighbours');
        return;
      } catch (err) {
        if (err instanceof AddonUnavailable) native = false;
        else opts.log?.warn({ address, device: where.device, err: (err as Error).message }, 'nsm: announcing the address to its neighbours failed; trying a tool');
      }
    }
    const cmd = announceCommand(address, where);
    if (!cmd) {
      if (!warnedMissing) opts.log?.warn({ address }, 'nsm: neither send_arp/send_ua (resource-agents) nor arping/ndsend is installed: neighbours are not told an arriving address before SM_NOTIFY, whose first exchange may be lost');
      warnedMissing = true;
      return;
    }
    const started = Date.now();
    await new Promise<void>((resolve) => {
      execFile(cmd[0]!, cmd.slice(1), { timeout: opts.timeoutMs ?? 2_000 }, (err, _out, stderr) => {
        if (err) opts.log?.warn({ address, device: where.device, command: cmd.join(' '), err: err.message, stderr: String(stderr).trim() }, 'nsm: announcing the address to its neighbours failed');
        else opts.log?.debug({ address, device: where.device, ms: Date.now() - started }, 'nsm: address announced to its neighbours');
        resolve();
      });
    });
  };
}
