// A node of the etcd store in its own process, killed -9 by a test: argv endpoints(comma) prefix
// node livenessMs address. Takes the address over, commits one entry, prints "ready", waits.
import pino from 'pino';
import { EtcdStore } from '../../src/store';

const [endpoints, prefix, node, livenessMs, address] = process.argv.slice(2) as [string, string, string, string, string];
void (async () => {
  const s = await EtcdStore.open({ endpoints: endpoints.split(','), prefix, node, livenessMs: Number(livenessMs), log: pino({ level: 'silent' }) });
  await s.takeOver(address);
  s.append(address, [{ key: 'held', value: Buffer.from('1') }]);
  await s.commit();
  process.stdout.write('ready\n');
  setInterval(() => undefined, 60_000);
})();
