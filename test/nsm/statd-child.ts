// lockdrop's statd alone in a process, for the SIGKILL test: serves SM_MON on 127.0.0.1 and
// prints its port. Usage: node --require tsx/cjs statd-child.ts <state-dir>
import { RpcServer } from '../../src/rpc';
import { createNsmProgram, Nsm, NsmStore } from '../../src/nsm';

async function main(): Promise<void> {
  const nsm = new Nsm({ store: new NsmStore(process.argv[2]!) });
  const server = new RpcServer({ duplicateCacheSize: 4096 });
  server.register(createNsmProgram({ nsm }));
  await server.addAddress('127.0.0.1');
  process.stdout.write(`${server.port}\n`);
}
main().catch((err) => {
  console.error(err);
  process.exit(1);
});
