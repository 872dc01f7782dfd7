// Duplicate address detection for an arriving IPv4 address: an ARP probe (RFC 5227, `arping -D`)
// asks whether another host on the link already answers for it — a second node with the same
// floating address, which the shared state directory's lease alone cannot see when the other
// node does not run lockdrop. IPv6 has it from the kernel: a tentative or dadfailed address
// never arrives. Where arping is missing or not allowed (no CAP_NET_RAW) the probe says why.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export type ProbeResult = { duplicate: false } | { duplicate: true; mac: string } | { unavailable: string };

interface Link {
  ifindex: number;
  ifname: string;
  address?: string;
}

/** This network namespace's links: names by index, and the hardware addresses that are this host's own. */
async function links(): Promise<Link[]> {
  const { stdout } = await run('ip', ['-j', 'link', 'show'], { timeout: 2_000 });
  return JSON.parse(stdout) as Link[];
}

export async function arpProbe(address: string, ifindex: number): Promise<ProbeResult> {
  let all: Link[];
  try {
    all = await links();
  } catch (err) {
    return { unavailable: `cannot list interfaces: ${(err as Error).message}` };
  }
  const ifname = all.find((l) => l.ifindex === ifindex)?.ifname;
  if (!ifname) return { unavailable: `no interface with index ${ifindex}` };
  let out: string;
  try {
    // Two probes within a second, as RFC 5227's PROBE_NUM/PROBE_MAX allow for a quick check.
    // Exit 0: no reply; 1: a reply (its lines say from whom).
    out = (await run('arping', ['-D', '-c', '2', '-w', '1', '-I', ifname, address], { timeout: 3_000 })).stdout;
  } catch (err) {
    const e = err as { code?: string | number; stdout?: string; stderr?: string; message: string };
    if (e.code === 'ENOENT') return { unavailable: 'arping is not installed (iputils-arping)' };
    if (e.code !== 1) return { unavailable: (e.stderr || e.message).trim().split('\n')[0] ?? 'arping failed' };
    out = e.stdout ?? '';
  }
  // A reply from one of this host's own interfaces (two on one segment) is not another host.
  const own = new Set(all.map((l) => l.address?.toLowerCase()).filter(Boolean));
  const others = [...out.matchAll(/reply from \S+ \[([0-9A-Fa-f:]{17})\]/g)].map((m) => m[1]!.toLowerCase()).filter((mac) => !own.has(mac));
  return others.length ? { duplicate: true, mac: others[0]! } : { duplicate: false };
}
