// `lockdrop demo`: a failover in a lab of namespaces, narrated with timings. Two lockdropd nodes
// share the moving address's state folder (as shared storage would), two clients hold locks
// through two floating addresses, and the address moves the way a cluster agent moves it.
import { mkdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import type { JsonLines, LabHost } from './lab';
import { moveAddress, narrateClient, narrateDaemon, removeCommand, runScene, showLocks, type SceneOptions } from './stage';

export { runActiveActiveDemo, type ActiveActiveOptions, type ActiveActiveResult } from './active-active';

export interface DemoOptions extends SceneOptions {
  /** Seconds of grace on the takeover node. */
  graceSeconds?: number;
  /** Locks each client takes. */
  locksPerClient?: number;
}

export interface DemoResult {
  dropped: number;
  droppedMs: number;
  removedBy: string | undefined;
  otherAddressDuringDrop: string;
  notifiedFrom: string | undefined;
  reclaimed: number;
  newLockOnMovedAddress: string;
  newLockOnOtherAddress: string;
  leftovers: string[];
}

const MOVING = '10.77.0.100';
const STAYING = '10.77.0.101';

export function runDemo(opts: DemoOptions = {}): Promise<DemoResult> {
  const perClient = opts.locksPerClient ?? 20;
  return runScene(opts, async (scene) => {
    const { lab, say, print, work, useIpaddr2 } = scene;
    say('building the lab: a bridge, a server node, a takeover node and two client hosts, each with its own rpcbind');
    await lab.start();
    const srv = await lab.addHost('srv', 1);
    const tko = await lab.addHost('tko', 2);
    const c1 = await lab.addHost('c1', 11);
    const c2 = await lab.addHost('c2', 12);
    lab.exec(srv, 'ip', ['addr', 'add', `${MOVING}/24`, 'dev', srv.nic]);
    lab.exec(srv, 'ip', ['addr', 'add', `${STAYING}/24`, 'dev', srv.nic]);
    say(`server ${srv.address} holds floating addresses ${MOVING} and ${STAYING}; takeover node ${tko.address}; clients ${c1.address}, ${c2.address}`);

    // The moving address's NSM folder is on "shared storage": both nodes see the same one.
    const shared = path.join(work, 'shared', MOVING);
    mkdirSync(shared, { recursive: true });
    const nodes = new Map<string, { host: LabHost; control: string; log: JsonLines }>();
    for (const host of [srv, tko]) {
      const dir = path.join(work, host.name);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      symlinkSync(shared, path.join(dir, MOVING));
      const daemon = lab.startDaemon(host, dir, {
        grace: opts.graceSeconds ?? 20, addresses: [`${MOVING}/32`, `${STAYING}/32`], pollInterval: 1, notify: { timeout: 30 },
      }, (j) => narrateDaemon(host.name, j, say), (line) => print(`  ${host.name}! ${line}`));
      nodes.set(host.name, { host, ...daemon });
    }
    for (const { host, control } of nodes.values()) await lab.waitForControl(host, control);
    say('lockdropd runs on both nodes (NLM and statd registered with each node\'s rpcbind)');

    const clients = new Map<string, JsonLines>();
    for (const host of [c1, c2]) {
      clients.set(host.name, await lab.startClient(host, (j) => narrateClient(host.name, j, say), (line) => print(`  ${host.name}! ${line}`)));
    }
    const [cl1, cl2] = [clients.get('c1')!, clients.get('c2')!];
    const node = (name: string) => nodes.get(name)!;

    say(`c1 locks ${perClient} ranges through ${MOVING}; c2 locks ${perClient} through ${STAYING}`);
    let mark1 = cl1.count;
    cl1.send({ do: 'lock', server: MOVING, count: perClient });
    cl2.send({ do: 'lock', server: STAYING, count: perClient });
    await cl1.wait('c1 locked', (j) => j.event === 'locked', 30_000, mark1);
    await cl2.wait('c2 locked', (j) => j.event === 'locked');
    showLocks(say, lab, node('srv'));

    say(`removing ${MOVING} from the server with ${removeCommand(scene)}, as a cluster agent would`);
    const srvMark = node('srv').log.count;
    const removedAt = Date.now();
    moveAddress(scene, srv, MOVING, 'stop');
    const drop = await node('srv').log.wait(`the drop of ${MOVING}`, (j) => j.address === MOVING && typeof j.locks === 'number' && typeof j.ms === 'number', 30_000, srvMark);
    say(`command returned after ${Date.now() - removedAt} ms; the drop itself took ${Number(drop.ms).toFixed(2)} ms from the kernel event`);
    showLocks(say, lab, node('srv'));

    mark1 = cl2.count;
    cl2.send({ do: 'try', server: STAYING, offset: 5_000_000 });
    const during = await cl2.wait('c2 new lock', (j) => j.event === 'tried', 15_000, mark1);
    say(`c2 meanwhile takes a new lock through ${STAYING}: ${during.status} (no grace there)`);

    say(`bringing ${MOVING} up on the takeover node with ${useIpaddr2 ? 'IPaddr2 start' : 'ip addr add'}`);
    mark1 = cl1.count;
    const addedAt = Date.now();
    moveAddress(scene, tko, MOVING, 'start');
    const notice = await cl1.wait('SM_NOTIFY at c1', (j) => j.event === 'sm-notify', 30_000, mark1);
    say(`c1 got SM_NOTIFY from ${notice.from} (state ${notice.state}) ${notice.at - addedAt} ms after the address was added`);
    const reclaimed = await cl1.wait('c1 reclaim', (j) => j.event === 'reclaimed', 30_000, mark1);
    say(`c1 reclaimed ${reclaimed.granted} of ${reclaimed.of} locks on the takeover node in ${reclaimed.ms} ms`);

    mark1 = cl1.count;
    cl1.send({ do: 'try', server: MOVING, offset: 9_000_000 });
    const onMoved = await cl1.wait('c1 new lock', (j) => j.event === 'tried', 15_000, mark1);
    const mark2 = cl2.count;
    cl2.send({ do: 'try', server: STAYING, offset: 9_000_000 });
    const onOther = await cl2.wait('c2 new lock', (j) => j.event === 'tried', 15_000, mark2);
    say(`a new (non-reclaim) lock through ${MOVING} during its grace: ${onMoved.status}; through ${STAYING}: ${onOther.status}`);
    showLocks(say, lab, node('tko'));
    showLocks(say, lab, node('srv'));

    return {
      dropped: drop.locks, droppedMs: drop.ms, removedBy: drop.comm, otherAddressDuringDrop: during.status,
      notifiedFrom: notice.from, reclaimed: reclaimed.granted, newLockOnMovedAddress: onMoved.status, newLockOnOtherAddress: onOther.status,
    };
  });
}
