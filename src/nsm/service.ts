// The statd RPC program (100024 v1) over an Nsm. Calls are keyed by the server address they
// arrived on (ctx.local.address), filed under its identity (Nsm.identityOf). As nfs-utils' statd,
// the procedures that change who is monitored (MON, UNMON, UNMON_ALL, SIMU_CRASH) are taken only
// from this machine, SIMU_CRASH only from a privileged port.
import type { Logger } from 'pino';
import type { CallContext, ProgramVersion, Procedure } from '../rpc';
import { isLoopback, normaliseAddress } from '../net';
import {
  decodeMon, decodeMonId, decodeMyId, decodeSmName, decodeStatChge, decodeVoid,
  encodeSmStat, encodeSmStatRes, encodeVoid,
  NSM_PROGRAM, NSM_VERSION, SM_MON, SM_NOTIFY, SM_NULL, SM_SIMU_CRASH, SM_STAT, SM_UNMON, SM_UNMON_ALL, STAT_FAIL, STAT_SUCC,
  type Mon, type MonId, type MyId, type SmStatRes, type StatChge,
} from './protocol';
import type { Nsm } from './monitor';

export interface NsmProgramDeps {
  nsm: Nsm;
  log?: Logger;
  /** Who may monitor and unmonitor. Default: loopback callers and callers from the server address itself. */
  isLocalCaller?: (ctx: CallContext) => boolean;
}

const PRIVILEGED_PORT_LIMIT = 1024;

export const defaultIsLocalCaller = (ctx: CallContext): boolean =>
  isLoopback(ctx.peer.address) || normaliseAddress(ctx.peer.address) === normaliseAddress(ctx.local.address);

export function createNsmProgram(deps: NsmProgramDeps): ProgramVersion {
  const { nsm, log } = deps;
  const isLocal = deps.isLocalCaller ?? defaultIsLocalCaller;
  const refuse = (ctx: CallContext, what: string): void =>
    void log?.warn({ from: ctx.peer.address, port: ctx.peer.port, address: ctx.local.address }, `nsm: ${what} refused`);

  const procedures = new Map<number, Procedure<any, any>>([
    [SM_NULL, { name: 'SM_NULL', decodeArgs: decodeVoid, encodeResult: encodeVoid, handle: () => undefined, idempotent: true } satisfies Procedure<undefined, undefined>],
    [SM_STAT, {
      name: 'SM_STAT',
      decodeArgs: decodeSmName,
      encodeResult: encodeSmStatRes,
      idempotent: true,
      handle: async (_name, ctx) => ({ res: STAT_SUCC, state: await nsm.upState(ctx.local.address) }),
    } satisfies Procedure<string, SmStatRes>],
    [SM_MON, {
      name: 'SM_MON',
      decodeArgs: decodeMon,
      encodeResult: encodeSmStatRes,
      idempotent: true,
      handle: async (m, ctx) => {
        if (!isLocal(ctx)) {
          refuse(ctx, 'SM_MON from a remote caller');
          return { res: STAT_FAIL, state: await nsm.upState(ctx.local.address) };
        }
        return nsm.rpcMonitor(m, ctx.local.address, ctx.peer.address);
      },
    } satisfies Procedure<Mon, SmStatRes>],
    [SM_UNMON, {
      name: 'SM_UNMON',
      decodeArgs: decodeMonId,
      encodeResult: encodeSmStat,
      idempotent: true,
      handle: async (id, ctx) => {
        if (isLocal(ctx)) return nsm.rpcUnmonitor(id, ctx.local.address);
        refuse(ctx, 'SM_UNMON from a remote caller');
        return nsm.upState(ctx.local.address);
      },
    } satisfies Procedure<MonId, number>],
    [SM_UNMON_ALL, {
      name: 'SM_UNMON_ALL',
      decodeArgs: decodeMyId,
      encodeResult: encodeSmStat,
      idempotent: true,
      handle: async (id, ctx) => {
        if (isLocal(ctx)) return nsm.rpcUnmonitorAll(id, ctx.local.address);
        refuse(ctx, 'SM_UNMON_ALL from a remote caller');
        return nsm.upState(ctx.local.address);
      },
    } satisfies Procedure<MyId, number>],
    [SM_SIMU_CRASH, {
      name: 'SM_SIMU_CRASH',
      decodeArgs: decodeVoid,
      encodeResult: encodeVoid,
      handle: async (_v, ctx) => {
        // As nfs-utils: only from this machine, and only from a privileged port (root asked).
        if (!isLocal(ctx) || ctx.peer.port >= PRIVILEGED_PORT_LIMIT) {
          refuse(ctx, isLocal(ctx) ? 'SM_SIMU_CRASH from an unprivileged port' : 'SM_SIMU_CRASH from a remote caller');
          return undefined;
        }
        const addr = nsm.identityOf(ctx.local.address);
        await nsm.bumpState(addr);
        // Answer now; the notices go on for as long as they need.
        nsm.notify(addr).catch((err: Error) => log?.warn({ err, address: addr }, 'nsm: notify after SM_SIMU_CRASH failed'));
        return undefined;
      },
    } satisfies Procedure<undefined, undefined>],
    [SM_NOTIFY, {
      name: 'SM_NOTIFY',
      decodeArgs: decodeStatChge,
      encodeResult: encodeVoid,
      handle: async (args, ctx) => {
        await nsm.hostNotified(args, ctx.peer.address);
        return undefined;
      },
    } satisfies Procedure<StatChge, undefined>],
  ]);
  return { prog: NSM_PROGRAM, vers: NSM_VERSION, procedures };
}
