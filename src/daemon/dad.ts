// Duplicate address detection for an arriving IPv4 address: an ARP probe (RFC 5227, `arping -D`)
// asks whether another host on the link already answers for it — a second node with the same
// floating address, which the shared state directory's lease alone cannot see when the other
// node does not run lockdrop. IPv6 has it from the kernel: a tentative or dadfailed address
// never arrives. Where arping is missing or not allowed (no CAP_NET_RAW) the probe says why.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export type ProbeResult = { duplicate: false } | { duplicate: true; mac: string } | { unavailable: string };

/** The interface name of an index, in this network namespace. */
async function interfaceName(ifindex: number): Promise<string | undefined> {
  const { stdout } = await run('ip', ['-j', 'link', 'show'], { timeout: 2_000 });
  return (JSON.parse(stdout) as { ifindex: number; ifname: string }[]).find((l) => l.ifindex === ifindex)?.ifname;
}

export async function arpProbe(address: string, ifindex: number): Promise<ProbeResult> {
  let ifname: string | undefined;
  try {
    ifname = await interfaceName(ifindex);
  } catch (err) {
    return { unavailable: `cannot list interfaces: ${(err as Error).message}` };
  }
  if (!ifname) return { unavailable: `no interface with index ${ifindex}` };
  try {
    // Two probes within a second, as RFC 5227's PROBE_NUM/PROBE_MAX allow for a quick check.
    await run('arping', ['-D', '-q', '-c', '2', '-w', '1', '-I', ifname, address], { timeout: 3_000 });
    return { duplicate: false };
  } catch (err) {
    const e = err as { code?: string | number; stdout?: string; stderr?: string; message: string };
    if (e.code === 'ENOENT') return { unavailable: 'arping is not installed (iputils-arping)' };
    // arping -D exits 1 when a reply came: the address is in use elsewhere.
    if (e.code === 1) {
      // -q hides the reply: ask once more, loudly, for the answering MAC.
      const again = await run('arping', ['-D', '-c', '1', '-w', '1', '-I', ifname, address], { timeout: 3_000 }).catch((x: { stdout?: string }) => x);
      const mac = /\[([0-9A-Fa-f:]{17})\]/.exec(String((again as { stdout?: string }).stdout ?? ''))?.[1];
      return { duplicate: true, mac: mac ?? 'unknown' };
    }
    return { unavailable: (e.stderr ?? e.message).trim().split('\n')[0] ?? 'arping failed' };
  }
}
