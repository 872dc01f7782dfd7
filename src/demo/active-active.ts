// `lockdrop demo --active-active`: two nodes serve one directory, each through its own floating
// address, as two nodes of a cluster filesystem do. Every NLM lock is on the file, so node B sees
// node A's locks through the kernel: a client of B is refused the bytes a client of A holds and
// queues; when A's address goes (a cluster agent's IPaddr2 stop), A drops that address's locks
// from the files before it says so, and B's kernel wait hands the bytes to B's waiter.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { addonStatus } from '../addon';
import { nameToHandle } from '../addon/files';
import { knfsdHandle } from '../exports';
import type { JsonLines, LabHost } from './lab';
import { moveAddress, narrateClient, narrateDaemon, removeCommand, runScene, showLocks, type SceneOptions } from './stage';

export type ActiveActiveOptions = SceneOptions;

export interface ActiveActiveResult {
  /** c1's lock through node A. */
  lockThroughA: string;
  /** c2's request for the same bytes through node B. */
  sameBytesThroughB: string;
  /** TEST through node B: who holds them (svid 0: a holder outside node B's lockdropd). */
  holderSeenByB: { svid: number; offset: number; length: number } | undefined;
  /** c2's blocking request through node B. */
  waiter: string;
  /** Locks node A dropped with its address. */
  dropped: number;
  /** From starting to remove A's address to B's GRANTED callback at c2. */
  grantedMs: number;
  leftovers: string[];
}

const VIP_A = '10.77.0.100';
const VIP_B = '10.77.0.101';
const FSID = 41;

export function runActiveActiveDemo(opts: ActiveActiveOptions = {}): Promise<ActiveActiveResult> {
  return runScene(opts, async (scene) => {
    const { lab, say, print, work } = scene;
    const addon = addonStatus();
    if (!addon.available) throw new Error(`the active-active scene locks on real files: it needs the native addon (${addon.reason})`);
    say('building the lab: a bridge, two server nodes and two client hosts, each with its own rpcbind');
    await lab.start();
    const a = await lab.addHost('nodeA', 1);
    const b = await lab.addHost('nodeB', 2);
    const c1 = await lab.addHost('c1', 11);
    const c2 = await lab.addHost('c2', 12);
    lab.exec(a, 'ip', ['addr', 'add', `${VIP_A}/24`, 'dev', a.nic]);
    lab.exec(b, 'ip', ['addr', 'add', `${VIP_B}/24`, 'dev', b.nic]);

    // One directory both nodes serve: on a cluster that is the cluster filesystem both mount.
    const shared = path.join(work, 'cluster-fs');
    mkdirSync(shared);
    const file = path.join(shared, 'data');
    writeFileSync(file, Buffer.alloc(4096));
    const fh = knfsdHandle(FSID, nameToHandle(file)).toString('hex');
    say(`node A ${a.address} serves ${VIP_A}, node B ${b.address} serves ${VIP_B}; both export ${shared} (fsid ${FSID}); clients ${c1.address}, ${c2.address}`);

    const nodes = new Map<string, { host: LabHost; control: string; log: JsonLines }>();
    for (const host of [a, b]) {
      const dir = path.join(work, host.name);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const daemon = lab.startDaemon(host, dir, {
        addresses: [`${VIP_A}/32`, `${VIP_B}/32`], pollInterval: 1, exports: [{ path: shared, fsid: FSID, secure: false }],
      }, (j) => narrateDaemon(host.name, j, say), (line) => print(`  ${host.name}! ${line}`));
      nodes.set(host.name, { host, ...daemon });
    }
    for (const { host, control } of nodes.values()) await lab.waitForControl(host, control);
    say('lockdropd runs on both nodes, each NLM lock an OFD lock on the exported file');
    const [nodeA, nodeB] = [nodes.get('nodeA')!, nodes.get('nodeB')!];

    const client = async (host: LabHost): Promise<JsonLines> =>
      lab.startClient(host, (j) => narrateClient(host.name, j, say), (line) => print(`  ${host.name}! ${line}`));
    const [cl1, cl2] = [await client(c1), await client(c2)];
    const ask = (c: JsonLines, cmd: Record<string, unknown>) => c.ask({ ...cmd, fh }, 'tried', 15_000);

    const mine = await ask(cl1, { do: 'try', server: VIP_A, offset: 0, length: 100 });
    say(`c1 locks bytes 0-99 of data through node A (${VIP_A}): ${mine.status}`);
    const refused = await ask(cl2, { do: 'try', server: VIP_B, offset: 50, length: 10 });
    say(`c2 asks node B (${VIP_B}) for bytes 50-59: ${refused.status} — node B's own table is empty there; the kernel refused it: node A's lock is on the file`);
    const seen = await cl2.ask({ do: 'test', server: VIP_B, offset: 0, length: 100, fh }, 'tested', 15_000);
    const h = seen.holder as ActiveActiveResult['holderSeenByB'];
    say(`c2 TESTs bytes 0-99 through node B: ${seen.status}${h ? `, held by svid ${h.svid} (outside node B) over bytes ${h.offset}-${h.offset + h.length - 1}` : ''}`);
    const mark = cl2.count;
    const waiter = await ask(cl2, { do: 'try', server: VIP_B, offset: 0, length: 100, block: true });
    say(`c2 queues a blocking lock on bytes 0-99 through node B: ${waiter.status} (node B waits in the kernel for the holder outside it)`);
    showLocks(say, lab, nodeA, 'node A');
    showLocks(say, lab, nodeB, 'node B');

    say(`removing ${VIP_A} from node A with ${removeCommand(scene)}, as a cluster agent would`);
    const aMark = nodeA.log.count;
    const removedAt = Date.now();
    moveAddress(scene, a, VIP_A, 'stop');
    const drop = await nodeA.log.wait(`the drop of ${VIP_A}`, (j) => j.address === VIP_A && typeof j.locks === 'number' && typeof j.ms === 'number', 30_000, aMark);
    const granted = await cl2.wait('GRANTED at c2', (j) => j.event === 'granted', 15_000, mark);
    // pino's time: when node A logged its drop done.
    const afterDrop = typeof drop.time === 'number' ? `, ${granted.at - drop.time} ms after node A's drop` : '';
    say(`c2 got GRANTED from node B (${granted.from}) for bytes ${granted.offset}-${granted.offset + granted.length - 1}${afterDrop} (${granted.at - removedAt} ms after the removal began): node A let go of the file, the kernel handed the bytes to node B's waiter`);
    showLocks(say, lab, nodeA, 'node A');
    showLocks(say, lab, nodeB, 'node B');

    return {
      lockThroughA: mine.status, sameBytesThroughB: refused.status, holderSeenByB: h, waiter: waiter.status,
      dropped: drop.locks, grantedMs: granted.at - removedAt,
    };
  });
}
