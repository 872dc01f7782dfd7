// The part of a client host's status monitor that a failover needs: an NSM program answering
// SM_NULL and SM_NOTIFY on the host's addresses, registered with the host's rpcbind, so that a
// server's SM_NOTIFY reaches it and it can reclaim. Used by the demo's client hosts and the
// failover-at-scale benchmark.
import { NSM_PROGRAM, NSM_VERSION, SM_NOTIFY, SM_NULL, decodeStatChge, decodeVoid, encodeVoid, type StatChge } from '../nsm';
import { RpcServer, registerWithRpcbind, type CallContext, type Procedure } from '../rpc';

export async function serveStatusMonitor(addresses: readonly string[], onNotify: (notice: StatChge, ctx: CallContext) => void): Promise<RpcServer> {
  const notify: Procedure<StatChge, undefined> = {
    name: 'SM_NOTIFY', decodeArgs: decodeStatChge, encodeResult: encodeVoid,
    handle: (args, ctx) => {
      onNotify(args, ctx);
      return undefined;
    },
  };
  const statd = new RpcServer();
  statd.register({
    prog: NSM_PROGRAM, vers: NSM_VERSION,
    procedures: new Map<number, Procedure<any, any>>([
      [SM_NULL, { name: 'SM_NULL', decodeArgs: decodeVoid, encodeResult: encodeVoid, handle: () => undefined, idempotent: true }],
      [SM_NOTIFY, notify],
    ]),
  });
  statd.listen({ port: 0 });
  for (const a of addresses) await statd.addAddress(a);
  await registerWithRpcbind((['udp', 'tcp'] as const).map((protocol) => ({ prog: NSM_PROGRAM, vers: NSM_VERSION, protocol, port: statd.port })), { mode: 'auto' });
  return statd;
}
