// Monitors asked for over RPC (SM_MON, SM_UNMON, SM_UNMON_ALL from a lock manager of this machine,
// service.ts having checked who calls): each with its my_id callback, told when the host reboots.
// The in-process lock manager monitors without RPC (Nsm.monitor).
import type { Logger } from 'pino';
import { isAddress, normaliseAddress } from '../net';
import { SM_MON_PROCS, SM_MON_PROG, STAT_FAIL, STAT_SUCC, type Mon, type MonId, type MyId, type SmStatRes } from './protocol';
import type { MonitorList } from './monitor-list';
import type { MonitorCallback } from './store';

export interface RpcMonitorsDeps {
  list: MonitorList;
  /** The identity a server address's monitors are filed under. */
  identityOf(serverAddress: string): string;
  /** The identity's state number, given a first one if it has none yet. */
  upState(serverAddress: string): Promise<number>;
  /** Resolves a mon_name that is not an address. */
  resolve: ((hostname: string) => Promise<string | undefined>) | undefined;
  log: Logger | undefined;
}

export class RpcMonitors {
  constructor(private readonly deps: RpcMonitorsDeps) {}

  /** SM_MON: the host is monitored through the server address the call came in on. */
  async monitor(m: Mon, serverAddress: string, callerAddress: string): Promise<SmStatRes> {
    const { log } = this.deps;
    const addr = this.deps.identityOf(serverAddress);
    const name = m.monId.monName;
    const { myProg, myProc } = m.monId.myId;
    // As nfs-utils: the callback can only be a lock manager's reboot procedure.
    if (myProg !== SM_MON_PROG || !SM_MON_PROCS.includes(myProc)) {
      log?.warn({ monName: name, myProg, myProc, address: addr }, 'nsm: SM_MON refused: the callback is not a lock manager\'s');
      return this.failed(addr);
    }
    const address = name.length === 0 || /[\s/]/.test(name) || name.startsWith('.') ? undefined
      : isAddress(name) ? name : await this.deps.resolve?.(name).catch(() => undefined);
    if (!address) {
      log?.warn({ monName: name, address: addr }, 'nsm: SM_MON for a host with no address');
      return this.failed(addr);
    }
    const cb: MonitorCallback = { ...m.monId.myId, priv: m.priv.toString('hex'), callbackAddress: normaliseAddress(callerAddress) };
    try {
      await this.deps.list.addMonitor(addr, name, normaliseAddress(address), { callback: cb });
    } catch (err) {
      log?.error({ err, monName: name, address: addr }, 'nsm: SM_MON record not written');
      return this.failed(addr);
    }
    return { res: STAT_SUCC, state: await this.deps.upState(addr) };
  }

  /** SM_UNMON: drops my_id's monitor of mon_name through the address; returns our state. */
  async unmonitor(id: MonId, serverAddress: string): Promise<number> {
    const addr = this.deps.identityOf(serverAddress);
    const { list } = this.deps;
    const e = await list.entry(addr);
    await Promise.all([...e.records].filter(([, r]) => r.monName === id.monName).map(([k]) => list.dropCallbacks(addr, e, k, id.myId)));
    return this.deps.upState(addr);
  }

  /** SM_UNMON_ALL: drops every monitor my_id holds through the address. */
  async unmonitorAll(id: MyId, serverAddress: string): Promise<number> {
    const addr = this.deps.identityOf(serverAddress);
    const { list } = this.deps;
    const e = await list.entry(addr);
    await Promise.all([...e.records.keys()].map((k) => list.dropCallbacks(addr, e, k, id)));
    return this.deps.upState(addr);
  }

  /** STAT_FAIL, with our state number (the last known one if it cannot be written). */
  private async failed(addr: string): Promise<SmStatRes> {
    return { res: STAT_FAIL, state: await this.deps.upState(addr).catch(() => this.deps.list.loaded(normaliseAddress(addr))?.state ?? 0) };
  }
}
