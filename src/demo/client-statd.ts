// The part of a status monitor an NFS client host needs: SM_NULL and SM_NOTIFY on the host's
// addresses (one port for all), registered with the host's rpcbind so a server's notifier finds
// it the way sm-notify does (GETPORT 100024 on port 111). What to do on a notice is the caller's.
import { NSM_PROGRAM, NSM_VERSION, SM_NOTIFY, SM_NULL, decodeStatChge, decodeVoid, encodeVoid, type StatChge } from '../nsm';
import { RpcServer, registerWithRpcbind, type CallContext, type Procedure } from '../rpc';

export async function startClientStatd(addresses: string[], onNotify: (notice: StatChge, ctx: CallContext) => void): Promise<RpcServer> {
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
  await registerWithRpcbind(
    (['udp', 'tcp'] as const).map((protocol) => ({ prog: NSM_PROGRAM, vers: NSM_VERSION, protocol, port: statd.port })),
    { mode: 'auto' },
  );
  return statd;
}
