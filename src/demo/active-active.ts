// `lockdrop demo --active-active`: two nodes serve one directory, each through its own floating
// address, as two nodes of a cluster filesystem do, over one shared state directory. Every NLM
// lock is on the file, so node B sees node A's locks through the kernel: a client of B is refused
// the bytes a client of A holds and queues. When A's address goes (a cluster agent's IPaddr2
// stop), A drops its locks from the file, but the address's lock journal keeps them for their
// owner: B's waiter is not let in. The address arrives on B, its client reclaims there, the grace
// ends by itself; only when that client lets go does B's waiter get the bytes.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { addonStatus } from '../addon';
import { nameToHandle } from '../addon/files';
import { knfsdHandle } from '../exports';
import type { JsonLines, LabHost } from './lab';
import { graceEnded, loggedAt, moveAddress, narrateClient, narrateDaemon, removeCommand, runScene, showLocks, type Json, type SceneOptions } from './stage';

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
  /** c1's locks reclaimed through A's address on node B. */
  reclaimed: number;
  /** Node B's line when that address's grace ended by itself. */
  graceEnded: string;
  /** From c1's unlock to B's GRANTED callback at c2. */
  grantedAfterUnlockMs: number;
  leftovers: string[];
}

const VIP_A = '10.77.0.100';
const VIP_B = '10.77.0.101';
const FSID = 41;
/** The statuses of a client host's `locked` or `unlocked` line (one lock: its status). */
const outcome = (j: Json): string => Object.keys(j.statuses as Record<string, number>).join(', ');
/** How long c2 is watched for a GRANTED that must not come, once node A has dropped. */
const HELD_MS = 1_000;

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

    // And one state directory both share (docs/cluster.md): every address's lock journal, seen by both.
    const state = path.join(work, 'state');
    mkdirSync(state, { mode: 0o700 });
    const nodes = new Map<string, { host: LabHost; control: string; log: JsonLines }>();
    for (const host of [a, b]) {
      const dir = path.join(work, host.name);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const daemon = lab.startDaemon(host, dir, {
        stateDir: state, addresses: [`${VIP_A}/32`, `${VIP_B}/32`], pollInterval: 1, exports: [{ path: shared, fsid: FSID, secure: false, rootSquash: false }],
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

    // A lock c1 keeps, and reclaims when told (client-host.ts): bytes 0-99.
    const mine = await cl1.ask({ do: 'lock', server: VIP_A, count: 1, fh }, 'locked', 15_000);
    say(`c1 locks bytes 0-99 of data through node A (${VIP_A}): ${outcome(mine)}`);
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
    // The kernel lets go of the bytes at the drop: a GRANTED now would be c1's lock lost.
    const early = await cl2.wait('GRANTED at c2', (j) => j.event === 'granted', HELD_MS, mark).catch(() => undefined);
    if (early) throw new Error(`node B granted c2 bytes ${early.offset}-${early.offset + early.length - 1} ${early.at - loggedAt(drop)} ms after node A's drop, before c1 could reclaim them: the journal did not keep c1's lock`);
    say(`node A let go of the file ${loggedAt(drop) - removedAt} ms after the removal began; ${HELD_MS} ms later c2 still waits: node B does not grant it — ${VIP_A}'s journal keeps c1's lock for its reclaim`);
    showLocks(say, lab, nodeB, 'node B');

    say(`bringing ${VIP_A} up on node B with ${scene.useIpaddr2 ? 'IPaddr2 start' : 'ip addr add'}`);
    const c1Mark = cl1.count;
    const bMark = nodeB.log.count;
    const addedAt = Date.now();
    moveAddress(scene, b, VIP_A, 'start');
    const notice = await cl1.wait('SM_NOTIFY at c1', (j) => j.event === 'sm-notify', 30_000, c1Mark);
    say(`c1 got SM_NOTIFY from ${notice.from} (state ${notice.state}) ${notice.at - addedAt} ms after the address was added to node B`);
    const reclaimed = await cl1.wait('c1 reclaim', (j) => j.event === 'reclaimed', 30_000, c1Mark);
    say(`c1 reclaimed ${reclaimed.granted} of ${reclaimed.of} lock on node B in ${reclaimed.ms} ms`);
    const ended = await nodeB.log.wait(`the end of ${VIP_A}'s grace`, graceEnded(VIP_A), 30_000, bMark);
    say(`${VIP_A}'s grace on node B ended by itself ${loggedAt(ended) - addedAt} ms after the address was added: nothing left to reclaim`);
    showLocks(say, lab, nodeB, 'node B');
    const stillWaiting = await cl2.wait('GRANTED at c2', (j) => j.event === 'granted', 200, mark).catch(() => undefined);
    if (stillWaiting) throw new Error(`node B granted c2 the bytes c1 reclaimed (${stillWaiting.at - reclaimed.at} ms from the reclaim)`);

    const unlocked = await cl1.ask({ do: 'unlock', server: VIP_A }, 'unlocked', 15_000);
    say(`c1 unlocks bytes 0-99 through ${VIP_A} (now on node B): UNLOCK ${outcome(unlocked)}`);
    const granted = await cl2.wait('GRANTED at c2', (j) => j.event === 'granted', 15_000, mark);
    say(`c2 got GRANTED from node B (${granted.from}) for bytes ${granted.offset}-${granted.offset + granted.length - 1} ${granted.at - unlocked.at} ms after c1's unlock (${granted.at - removedAt} ms after the removal began): only now, c1 having let go`);
    showLocks(say, lab, nodeB, 'node B');

    return {
      lockThroughA: outcome(mine), sameBytesThroughB: refused.status, holderSeenByB: h, waiter: waiter.status,
      dropped: drop.locks, reclaimed: reclaimed.granted, graceEnded: ended.msg, grantedAfterUnlockMs: granted.at - unlocked.at,
    };
  });
}
