// Counts in messages for people ("1 client", "2 clients"): failover's reports, the daemon's and
// lockdropctl's lines.
export const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

/**
 * The one line of a drop: "10.0.0.5 removed by ip[812]: dropped 3 locks of 1 client in 0.4 ms".
 * The poll source only knows when it saw the address gone, not when the kernel removed it: its
 * drops say how long after the detection they took.
 */
export function dropLine(d: { address: string; source: string; pid?: number; comm?: string; counts: { locks: number; clients: number }; ms: number }): string {
  const who = d.comm ? ` by ${d.comm}[${d.pid}]` : '';
  const timing = d.source === 'poll' ? `${d.ms.toFixed(1)} ms after the poll detected it (removed up to a poll interval earlier)` : `in ${d.ms.toFixed(1)} ms`;
  return `${d.address} removed${who}: dropped ${plural(d.counts.locks, 'lock')} of ${plural(d.counts.clients, 'client')} ${timing}`;
}
