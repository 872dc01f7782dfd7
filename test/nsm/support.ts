// Helpers for nsm's tests: lockdrop's statd on real sockets, and real nfs-common peers in namespaces.
import type { ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { RpcServer } from '../../src/rpc';
import { createNsmProgram, Nsm, NsmStore, RpcNsmSender, type NsmOptions } from '../../src/nsm';
import type { Netns } from '../support/netns';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export { waitFor } from '../support/wait';

export interface NsmUnderTest {
  nsm: Nsm;
  store: NsmStore;
  server: RpcServer;
  port: number;
  close(): Promise<void>;
}

/** lockdrop's statd: an Nsm over a state directory, served on the given addresses. */
export async function startNsm(stateDir: string, addresses: string[], opts: Partial<NsmOptions> = {}): Promise<NsmUnderTest> {
  const store = new NsmStore(stateDir);
  const nsm = new Nsm({ store, sender: new RpcNsmSender(), ...opts });
  const server = new RpcServer();
  server.register(createNsmProgram({ nsm }));
  for (const a of addresses) await server.addAddress(a);
  return {
    nsm, store, server, port: server.port,
    close: async () => {
      await server.close();
      await nsm.close();
    },
  };
}

/** An nfs-utils state directory with sm/ and sm.bak/ (rpc.statd and sm-notify need both). */
export function nfsUtilsDir(dir: string): string {
  mkdirSync(path.join(dir, 'sm'), { recursive: true });
  mkdirSync(path.join(dir, 'sm.bak'), { recursive: true });
  return dir;
}

/** One nfs-utils monitor record line, as rpc.statd writes them (callback to 127.0.0.1's NLM). */
export const nfsUtilsLine = (monName: string, myName: string): string =>
  `0100007f 000186b5 00000004 00000010 ${'00'.repeat(16)} ${monName} ${myName}\n`;

/**
 * Runs `script` inside the namespace in its own mount and pid namespaces (a private /run for a
 * second rpcbind; everything it starts dies with it).
 */
export function spawnIsolated(ns: Netns, script: string): ChildProcess {
  return ns.spawn('unshare', ['--mount', '--pid', '--fork', '--kill-child', 'sh', '-c', `mount -t tmpfs none /run && ${script}`]);
}

/** A shell script that appends its arguments to `log`: rpc.statd's --ha-callout. */
export function calloutScript(dir: string, log: string): string {
  const p = path.join(dir, 'callout.sh');
  writeFileSync(p, `#!/bin/sh\necho "$@" >> ${log}\n`);
  chmodSync(p, 0o755);
  return p;
}
