// `lockdrop demo`: a failover in a lab of namespaces, narrated with timings. Two lockdropd nodes
// share one state directory (as shared storage would), two clients hold locks through two
// floating addresses, and the address moves the way a cluster agent moves it; its locks are kept
// for their owner while it moves, and its grace ends as soon as they are reclaimed.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { demoFileOf } from './client-host';
import type { JsonLines, LabHost } from './lab';
import { graceEnded, loggedAt, moveAddress, narrateClient, narrateDaemon, removeCommand, runScene, showLocks, type SceneOptions } from './stage';

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
  /** c2's request, through the other address, for a range c1 held while the address was in transit. */
  movedRangeDuringMove: string;
  notifiedFrom: string | undefined;
  reclaimed: number;
  /** The takeover node's line when the grace ended by itself. */
  graceEnded: string;
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

    // One state directory on "shared storage" for both nodes (docs/cluster.md): every address's
    // NSM records and lock journal, seen by both; each node's control socket stays its own.
    const shared = path.join(work, 'shared');
    mkdirSync(shared, { mode: 0o700 });
    const nodes = new Map<string, { host: LabHost; control: string; log: JsonLines }>();
    for (const host of [srv, tko]) {
      const dir = path.join(work, host.name);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const daemon = lab.startDaemon(host, dir, {
        stateDir: shared, grace: opts.graceSeconds ?? 20, addresses: [`${MOVING}/32`, `${STAYING}/32`], pollInterval: 1, notify: { timeout: 30 },
      }, (j) => narrateDaemon(host.name, j, say), (line) => print(`  ${host.name}! ${line}`));
      nodes.set(host.name, { host, ...daemon });
    }
    for (const { host, control } of nodes.values()) await lab.waitForControl(host, control);
    say(`lockdropd runs on both nodes over one state directory (NLM and statd registered with each node's rpcbind)`);

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

    const during = await cl2.ask({ do: 'try', server: STAYING, offset: 5_000_000 }, 'tried', 15_000);
    say(`c2 meanwhile takes a new lock through ${STAYING}: ${during.status} (no grace there)`);
    // The kernel and srv's table say c1's bytes are free now: only the journal keeps them.
    const askedAt = Date.now();
    const kept = await cl2.ask({ do: 'try', server: STAYING, offset: 0, length: 100, fh: demoFileOf('c1').toString('hex') }, 'tried', 15_000);
    say(`c2 asks through ${STAYING} for bytes 0-99 of c1's file while ${MOVING} is between nodes: ${kept.status} in ${kept.at - askedAt} ms — kept for c1's reclaim (in ${MOVING}'s journal)`);

    say(`bringing ${MOVING} up on the takeover node with ${useIpaddr2 ? 'IPaddr2 start' : 'ip addr add'}`);
    mark1 = cl1.count;
    const tkoMark = node('tko').log.count;
    const addedAt = Date.now();
    moveAddress(scene, tko, MOVING, 'start');
    const notice = await cl1.wait('SM_NOTIFY at c1', (j) => j.event === 'sm-notify', 30_000, mark1);
    say(`c1 got SM_NOTIFY from ${notice.from} (state ${notice.state}) ${notice.at - addedAt} ms after the address was added`);
    const reclaimed = await cl1.wait('c1 reclaim', (j) => j.event === 'reclaimed', 30_000, mark1);
    say(`c1 reclaimed ${reclaimed.granted} of ${reclaimed.of} locks on the takeover node in ${reclaimed.ms} ms`);
    const ended = await node('tko').log.wait(`the end of ${MOVING}'s grace`, graceEnded(MOVING), 30_000, tkoMark);
    say(`${MOVING}'s grace ended by itself ${loggedAt(ended) - addedAt} ms after the address was added, not at its ${opts.graceSeconds ?? 20} s deadline: nothing was left to reclaim`);

    const newAt = Date.now();
    const onMoved = await cl1.ask({ do: 'try', server: MOVING, offset: 9_000_000 }, 'tried', 15_000);
    const onOther = await cl2.ask({ do: 'try', server: STAYING, offset: 9_000_000 }, 'tried', 15_000);
    say(`a new (non-reclaim) lock through ${MOVING}, its grace over: ${onMoved.status} in ${onMoved.at - newAt} ms, no waiting for a deadline; through ${STAYING}: ${onOther.status}`);
    showLocks(say, lab, node('tko'));
    showLocks(say, lab, node('srv'));

    return {
      dropped: drop.locks, droppedMs: drop.ms, removedBy: drop.comm, otherAddressDuringDrop: during.status, movedRangeDuringMove: kept.status,
      notifiedFrom: notice.from, reclaimed: reclaimed.granted, graceEnded: ended.msg, newLockOnMovedAddress: onMoved.status, newLockOnOtherAddress: onOther.status,
    };
  });
}
