// The chaos test's NFS client hosts, all in one process on one lab host (one network namespace,
// its own rpcbind), each with an address, a caller_name and a lock manager callback server of its
// own (every host listens on the one callback port registered with rpcbind, on its own address).
// Each host locks through one floating address, over UDP or TCP (NLM v4), in `lanes` concurrent
// sequences of lock → hold → unlock drawn from the seed. Its status monitor answers SM_NOTIFY as a
// kernel client's does: new requests wait, requests in flight finish, waits for GRANTED are given
// up, and every lock it holds through that address is reclaimed at once (reclaim=true).
//
// Everything a host sees is one JSON line on stdout, stamped on CLOCK_MONOTONIC (µs), the
// checker's events (checker.ts); lines with `ctl` answer the runner's commands on stdin:
//   {"do":"stop"}      no new requests; holds are kept; waits are cancelled   → {"ctl":"stopped"}
//   {"do":"holds"}     what every host holds, and whether any is still busy   → {"ctl":"holds"}
//   {"do":"release"}   every host unlocks everything it holds                  → {"ctl":"released"}
import { createInterface } from 'node:readline';
import { NlmClient, NLM_PROG, type GrantedCallback, type NlmResult } from '../../src/nlm';
import { registerWithRpcbind } from '../../src/rpc';
import { serveStatusMonitor } from '../../src/demo/statd-responder';
import type { ChaosEvent, RangeLock } from './checker';
import { clientIntents } from './schedule';

export interface ClientHostSpec {
  name: string;
  address: string;
  /** The floating address it locks through. */
  via: string;
  transport: 'udp' | 'tcp';
}

export interface ClientsConfig {
  seed: number;
  hosts: ClientHostSpec[];
  /** NFS file handles (hex) of the contended files, and their names in the logs. */
  files: { name: string; fh: string }[];
  nlmPort: number;
  callbackPort: number;
  lanes: number;
  /** Each RPC's overall timeout. */
  timeoutMs: number;
}

export const now = (): number => Number(process.hrtime.bigint() / 1000n);
const emit = (line: object): void => void process.stdout.write(`${JSON.stringify(line)}\n`);
const say = (e: Omit<ChaosEvent, 't'>): void => emit({ t: now(), ...e });

/** Sleeps that wakeAll() cuts short (the end of the chaos). */
export class Sleeps {
  private readonly wakers = new Set<() => void>();
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wakers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakers.add(done);
    });
  }
  wakeAll(): void {
    for (const w of [...this.wakers]) w();
  }
}

interface Spec { fh: Buffer; svid: number; offset: bigint; length: bigint; exclusive: boolean }
interface Held { spec: Spec; lock: RangeLock }
interface Waiter extends Held {
  /** After 'waiting', a GRANTED is stale: the host asked to cancel, and its UNLOCK follows. */
  state: 'waiting' | 'cancelling';
  /** A GRANTED callback arrived for it. */
  got: boolean;
  wake: (why: 'granted' | 'timeout' | 'interrupted') => void;
}

class ClientHost {
  readonly held = new Map<number, Held>();
  private readonly waiting = new Map<number, Waiter>();
  private inflight = 0;
  private idleWaiters: Array<() => void> = [];
  private gateWaiters: Array<() => void> = [];
  private reclaimState: number | undefined;
  /** The state number of the last SM_NOTIFY: a lock granted during a reclaim is reclaimed with it. */
  private lastState = 0;
  private reclaiming = false;
  private nextSvid = 1;
  stopping = false;
  private readonly sleeps = new Sleeps();

  constructor(readonly spec: ClientHostSpec, private readonly cfg: ClientsConfig, private readonly client: NlmClient) {
    client.on('granted', (g: GrantedCallback) => this.onGranted(g));
  }

  get busy(): boolean {
    return this.inflight > 0 || this.reclaiming || this.reclaimState !== undefined || this.waiting.size > 0;
  }

  private log(e: Omit<ChaosEvent, 't' | 'via'>): void {
    say({ via: this.spec.via, ...e });
  }

  private owner(svid: number): string { return `${this.spec.name}/${svid}`; }

  /** Resolves when no reclaim is pending or running: requests wait behind a reclaim, as a kernel client's do. */
  private async gate(): Promise<void> {
    while (this.reclaiming || this.reclaimState !== undefined) await new Promise<void>((r) => this.gateWaiters.push(r));
  }

  private async rpc(f: () => Promise<NlmResult>): Promise<NlmResult | Error> {
    this.inflight++;
    try {
      return await f();
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err));
    } finally {
      if (--this.inflight === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  async lane(k: number): Promise<void> {
    const next = clientIntents(this.cfg.seed, `${this.spec.name}/${k}`, this.cfg.files.length);
    while (!this.stopping) {
      const it = next();
      await this.sleeps.sleep(it.thinkMs);
      if (this.stopping) break;
      await this.gate();
      if (this.stopping) break;
      const svid = this.nextSvid++;
      const file = this.cfg.files[it.file]!;
      const spec: Spec = { fh: Buffer.from(file.fh, 'hex'), svid, offset: BigInt(it.offset), length: BigInt(it.length), exclusive: it.exclusive };
      const lock: RangeLock = { file: file.name, offset: it.offset, length: it.length, exclusive: it.exclusive };
      const owner = this.owner(svid);
      let waiter: Waiter | undefined;
      const woken = new Promise<'granted' | 'timeout' | 'interrupted'>((resolve) => {
        if (it.block) this.waiting.set(svid, (waiter = { spec, lock, state: 'waiting', got: false, wake: resolve }));
      });
      this.log({ kind: 'requested', owner, lock, op: 'lock', block: it.block });
      const sent = now();
      const r = await this.rpc(() => this.client.lock({ ...spec, block: it.block }));
      if (r instanceof Error) {
        this.log({ kind: 'failed', owner, lock, op: 'lock', sent, status: r.message });
        if (await this.cleanup(svid, spec, lock, waiter)) await this.holdFor(svid, it.holdMs);
        continue;
      }
      if (r.status === 'granted') {
        this.waiting.delete(svid);
        this.log({ kind: 'granted', owner, lock, sent, how: 'reply' });
        this.held.set(svid, { spec, lock });
        await this.holdFor(svid, it.holdMs);
      } else if (r.status === 'blocked' && waiter) {
        this.log({ kind: 'blocked', owner, lock, sent });
        const w = waiter;
        const timer = setTimeout(() => w.wake('timeout'), it.waitMs);
        await woken;
        clearTimeout(timer);
        // Granted by callback (then already among the held, reclaimed with them), else given up.
        if (w.got || (await this.cleanup(svid, spec, lock, w))) {
          this.waiting.delete(svid);
          await this.holdFor(svid, it.holdMs);
        }
      } else {
        this.waiting.delete(svid);
        const kind = r.status === 'denied' || r.status === 'denied_grace_period' ? r.status : 'failed';
        this.log({ kind, owner, lock, sent, status: r.status });
        // As Linux's client waits on a grace period before asking again (5 s there).
        if (kind === 'denied_grace_period') await this.sleeps.sleep(1000);
      }
    }
  }

  /** Holds a lock for a while, then releases it; at the end of the chaos it is kept for the quiet check (released on "release"). */
  private async holdFor(svid: number, ms: number): Promise<void> {
    await this.sleeps.sleep(ms);
    if (!this.stopping) await this.release(svid);
  }

  /**
   * A request whose outcome is unknown (no answer), or a wait given up: CANCEL a wait, then UNLOCK
   * the range (only this svid can hold it), so the server keeps nothing the host does not know of.
   * A GRANTED callback that came before it began makes it a hold instead (true returned: the caller
   * holds it); one after is stale (a callback can trail the grant it reports, as the server looks up
   * our port first), and the UNLOCK releases whatever the server granted.
   */
  private async cleanup(svid: number, spec: Spec, lock: RangeLock, w: Waiter | undefined): Promise<boolean> {
    await this.gate();
    if (w && !w.got) {
      w.state = 'cancelling';
      this.log({ kind: 'requested', owner: this.owner(svid), lock, op: 'cancel' });
      const c = await this.rpc(() => this.client.cancel({ ...spec, block: true }));
      if (!(c instanceof Error)) this.log({ kind: 'cancelled', owner: this.owner(svid), lock, status: c.status });
    }
    this.waiting.delete(svid);
    if (w?.got) return true;
    this.log({ kind: 'requested', owner: this.owner(svid), lock, op: 'unlock' });
    await this.unlock(svid, spec);
    return false;
  }

  private async unlock(svid: number, spec: Spec): Promise<void> {
    // A connection the move cut, or an address not served yet, fails at once: wait a little between tries (0.2, 0.4, 0.8, then 1.6 s).
    for (let attempt = 0; attempt < 8; attempt++) {
      const r = await this.rpc(() => this.client.unlock(spec));
      if (!(r instanceof Error)) return;
      await new Promise((res) => setTimeout(res, 200 * 2 ** Math.min(attempt, 3)));
    }
    say({ kind: 'failed', owner: this.owner(svid), via: this.spec.via, op: 'unlock', status: 'no answer to UNLOCK' });
  }

  async release(svid: number): Promise<void> {
    await this.gate();
    const h = this.held.get(svid);
    if (!h) return; // its reclaim was refused: nothing left to release
    this.held.delete(svid);
    this.log({ kind: 'released', owner: this.owner(svid), lock: h.lock });
    this.log({ kind: 'requested', owner: this.owner(svid), lock: h.lock, op: 'unlock' });
    await this.unlock(svid, h.spec);
  }

  async releaseAll(): Promise<void> {
    await Promise.all([...this.held.keys()].map((svid) => this.release(svid)));
  }

  private onGranted(g: GrantedCallback): void {
    const svid = g.lock.svid;
    const w = this.waiting.get(svid);
    // Once it asked to cancel, a host no longer relies on a grant: the UNLOCK that follows releases it.
    if (!w || w.got || w.state !== 'waiting') {
      say({ kind: 'granted_stale', owner: this.owner(svid), via: this.spec.via, status: `GRANTED from ${g.from.address}` });
      return;
    }
    w.got = true;
    this.log({ kind: 'granted', owner: this.owner(svid), lock: w.lock, how: 'callback' });
    // Held from now on, as a kernel client's granted block is: a reclaim under way takes it too.
    this.held.set(svid, { spec: w.spec, lock: w.lock });
    if (this.reclaiming && this.reclaimState === undefined) this.reclaimState = this.lastState;
    w.wake('granted');
  }

  /** SM_NOTIFY from the address this host locks through: its server lost our locks; reclaim them all. */
  onNotify(state: number, from: string): void {
    say({ kind: 'notify', owner: this.spec.name, via: this.spec.via, status: `state ${state} from ${from}` });
    this.reclaimState = this.lastState = state;
    for (const w of this.waiting.values()) if (w.state === 'waiting') w.wake('interrupted');
    void this.reclaimLoop();
  }

  private async reclaimLoop(): Promise<void> {
    if (this.reclaiming) return;
    this.reclaiming = true;
    while (this.reclaimState !== undefined) {
      const state = this.reclaimState;
      this.reclaimState = undefined;
      // Requests in flight finish first: a lock they are granted is reclaimed too.
      while (this.inflight > 0) await new Promise<void>((r) => this.idleWaiters.push(r));
      await Promise.all([...this.held].map(([svid, h]) => this.reclaim(svid, h, state)));
    }
    this.reclaiming = false;
    for (const w of this.gateWaiters.splice(0)) w();
  }

  private async reclaim(svid: number, h: Held, state: number): Promise<void> {
    const owner = this.owner(svid);
    // No answer: try again, unless another notice came meanwhile (the next pass reclaims).
    for (let attempt = 0; attempt < 3 && this.reclaimState === undefined; attempt++) {
      this.log({ kind: 'requested', owner, lock: h.lock, op: 'reclaim' });
      const sent = now();
      let r: NlmResult;
      try {
        r = await this.client.lock({ ...h.spec, reclaim: true, state });
      } catch (err) {
        this.log({ kind: 'failed', owner, lock: h.lock, op: 'reclaim', sent, status: (err as Error).message });
        await new Promise((res) => setTimeout(res, 200));
        continue;
      }
      if (r.status === 'granted') {
        this.log({ kind: 'reclaim_ok', owner, lock: h.lock, sent });
      } else {
        this.held.delete(svid);
        this.log({ kind: 'reclaim_refused', owner, lock: h.lock, sent, status: r.status });
      }
      return;
    }
  }

  stop(): void {
    this.stopping = true;
    this.sleeps.wakeAll();
    for (const w of this.waiting.values()) if (w.state === 'waiting') w.wake('interrupted');
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

export async function runClients(cfg: ClientsConfig): Promise<void> {
  // One callback port for every host (the host's rpcbind tells servers this one), each on its own address.
  const registration = await registerWithRpcbind((['udp', 'tcp'] as const).map((protocol) => ({ prog: NLM_PROG, vers: 4, protocol, port: cfg.callbackPort })), { mode: 'auto' });
  if (!registration.registered) throw new Error(`cannot register the NLM callback port: ${registration.reason}`);
  const hosts = await Promise.all(cfg.hosts.map(async (h) => new ClientHost(h, cfg, await NlmClient.create({
    server: { address: h.via, port: cfg.nlmPort }, transport: h.transport, vers: 4, callerName: h.name, source: h.address, timeoutMs: cfg.timeoutMs,
    callback: { address: h.address, port: cfg.callbackPort },
  }))));
  const byAddress = new Map(hosts.map((h) => [h.spec.address, h]));
  const statd = await serveStatusMonitor(cfg.hosts.map((h) => h.address), (notice, ctx) => {
    const h = byAddress.get(ctx.local.address);
    // A notice about another server than the one it locks through tells it nothing.
    if (h && notice.monName === h.spec.via) h.onNotify(notice.state, ctx.peer.address);
    else say({ kind: 'notify', owner: h?.spec.name ?? ctx.local.address, status: `ignored: mon_name ${notice.monName}` });
  });
  emit({ ctl: 'ready', t: now() });
  const lanes = hosts.flatMap((h) => Array.from({ length: cfg.lanes }, (_, k) => h.lane(k)));
  for await (const line of createInterface({ input: process.stdin })) {
    const cmd = JSON.parse(line) as { do: string };
    if (cmd.do === 'stop') {
      for (const h of hosts) h.stop();
      await Promise.all(lanes);
      emit({ ctl: 'stopped', t: now() });
    } else if (cmd.do === 'holds') {
      emit({ ctl: 'holds', t: now(), busy: hosts.filter((h) => h.busy).map((h) => h.spec.name), holds: hosts.flatMap((h) => [...h.held].map(([svid, x]) => ({ owner: `${h.spec.name}/${svid}`, caller: h.spec.name, svid, via: h.spec.via, lock: x.lock }))) });
    } else if (cmd.do === 'release') {
      await Promise.all(hosts.map((h) => h.releaseAll()));
      emit({ ctl: 'released', t: now() });
    } else if (cmd.do === 'exit') {
      break;
    }
  }
  await Promise.all(hosts.map((h) => h.close()));
  await statd.close();
  await registration.unregister();
}

if (require.main === module) {
  runClients(JSON.parse(process.argv[2] ?? '{}') as ClientsConfig).then(() => process.exit(0), (err) => {
    emit({ ctl: 'error', error: String(err instanceof Error ? err.stack : err) });
    process.exit(1);
  });
}
