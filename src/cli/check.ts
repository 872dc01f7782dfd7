// `lockdropctl check`: is lockdropd serving? What a cluster monitor (the OCF agent, keepalived's
// track_script) asks: the control socket answers, the daemon is ready, and NLM and statd answer a
// NULL call over UDP and TCP on every address it holds (loopback when it holds none).
import { NLM_PROG } from '../nlm';
import { NSM_PROGRAM, NSM_VERSION } from '../nsm';
import { callOnce } from '../rpc';
import type { CheckReport, StatusReport } from '../control';
import { request } from './client';

const NLM4 = 4;

export interface CheckOptions {
  /** Also require this address to be held and answering. */
  ip?: string;
  /** Also require this address to be released: not held, no lock left through it. */
  released?: string;
  timeoutMs: number;
}

export async function checkDaemon(control: string, opts: CheckOptions): Promise<CheckReport> {
  let s: StatusReport;
  try {
    s = await request<StatusReport>(control, { cmd: 'status' }, opts.timeoutMs);
  } catch (err) {
    return { ok: false, pid: null, answered: [], problems: [(err as Error).message] };
  }
  const problems: string[] = [];
  if (!s.ready) problems.push('still starting: not every present address is served yet');
  if (s.store && !s.store.ok) problems.push(`the cluster store (${s.store.kind}) cannot make new grants durable: ${s.store.reason ?? 'unavailable'}`);
  const held = s.addresses.filter((a) => a.present).map((a) => a.address);
  for (const a of s.addresses) if (a.heldBy) problems.push(`${a.address} is on this node but ${a.heldBy} holds its lease: not served here`);
  if (opts.ip !== undefined && !held.includes(opts.ip) && !s.addresses.some((a) => a.address === opts.ip && a.heldBy)) problems.push(`${opts.ip} is not held by this node`);
  if (opts.released !== undefined) {
    const a = s.addresses.find((x) => x.address === opts.released);
    if (a?.present) problems.push(`${a.address} is still held by this node`);
    else if (a && a.locks > 0) problems.push(`${a.address} still has ${a.locks} ${a.locks === 1 ? 'lock' : 'locks'}`);
  }
  const targets = held.length ? held : ['127.0.0.1'];
  const answered: string[] = [];
  await Promise.all(
    targets.map(async (host) => {
      const calls = (['udp', 'tcp'] as const).flatMap((transport) => [
        { what: `NLM ${host}:${s.nlmPort}/${transport}`, call: () => callOnce({ transport, host, port: s.nlmPort, timeoutMs: opts.timeoutMs }, NLM_PROG, NLM4, 0, () => undefined, () => undefined) },
        { what: `statd ${host}:${s.nsmPort}/${transport}`, call: () => callOnce({ transport, host, port: s.nsmPort, timeoutMs: opts.timeoutMs }, NSM_PROGRAM, NSM_VERSION, 0, () => undefined, () => undefined) },
      ]);
      const failed = (await Promise.all(calls.map((c) => c.call().then(() => undefined, (err: Error) => `${c.what}: ${err.message}`)))).filter((f): f is string => f !== undefined);
      if (failed.length) problems.push(...failed);
      else answered.push(host);
    }),
  );
  return { ok: problems.length === 0, pid: s.pid, answered: answered.sort(), problems };
}
