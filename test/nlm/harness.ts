// A real NLM server for tests: LockTable + NLM service on an RpcServer bound to the given server
// addresses, and a real rpcbind (the test namespace's own) for callbacks to find clients.
import { LockTable, type FileLocker } from '../../src/locks';
import { RpcServer } from '../../src/rpc';
import { createNlmService, NlmClient, type HostMonitor, type NlmClientOptions, type NlmService, type NlmServiceDeps, type NlmServiceOptions } from '../../src/nlm';
import { ip, requireNamespaceRoot, sh, startRpcbind } from '../support/netns';

export interface TestServer {
  table: LockTable;
  service: NlmService;
  rpc: RpcServer;
  port: number;
  close(): Promise<void>;
}

export async function startServer(addresses: string[], o: {
  options?: Partial<NlmServiceOptions>;
  monitor?: HostMonitor;
  exportPolicy?: NlmServiceDeps['exportPolicy'];
  onReboot?: NlmServiceDeps['onReboot'];
  port?: number;
  /** Real files under the table (src/files), with the exports' handle → export mapping. */
  files?: { locker: FileLocker; exportOf: (fh: Buffer) => string | undefined };
} = {}): Promise<TestServer> {
  let service: NlmService | undefined;
  const table = new LockTable({ onBlockGranted: (g) => service!.onBlockGranted(g), locker: o.files?.locker, exportOf: o.files?.exportOf });
  service = createNlmService({
    table, monitor: o.monitor, exportPolicy: o.exportPolicy, onReboot: o.onReboot,
    options: { serverName: 'nlm-test-server', grantRetryInitialMs: 100, grantRetryMaxMs: 400, callbackTimeoutMs: 1_000, ...o.options },
  });
  const rpc = new RpcServer();
  for (const p of service.programs) rpc.register(p);
  if (o.port) rpc.listen({ port: o.port });
  for (const a of addresses) await rpc.addAddress(a);
  return {
    table, service, rpc, port: rpc.port,
    close: async () => {
      service!.close();
      await rpc.close();
    },
  };
}

/** Local addresses on lo inside the test namespace (this kernel has no dummy interfaces). */
export function addLoopbackAddresses(addresses: string[]): () => void {
  for (const a of addresses) ip('addr', 'add', `${a}/32`, 'dev', 'lo');
  return () => {
    for (const a of addresses) sh('ip', ['addr', 'del', `${a}/32`, 'dev', 'lo'], { allowFail: true });
  };
}

export const clientFor = (server: TestServer, address: string, o: Partial<NlmClientOptions> & Pick<NlmClientOptions, 'transport' | 'vers'>): Promise<NlmClient> =>
  NlmClient.create({ server: { address, port: server.port }, callerName: 'client-a', timeoutMs: 3_000, ...o });

export const fh = (name: string): Buffer => Buffer.from(`fh:${name}`.padEnd(32, '\0'));

/** A suite's network (mocha hooks): these addresses on lo and the namespace's rpcbind, both gone after. */
export function onLoopbackWithRpcbind(addresses: string[]): void {
  let removeAddresses: (() => void) | undefined;
  let stopRpcbind: (() => Promise<void>) | undefined;
  before(async function () {
    requireNamespaceRoot(this);
    removeAddresses = addLoopbackAddresses(addresses);
    stopRpcbind = await startRpcbind();
  });
  after(async () => {
    await stopRpcbind?.();
    removeAddresses?.();
  });
}
