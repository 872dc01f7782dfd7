// What the status monitor asks of its RPC side (notifier.ts implements it over src/rpc): SM_NOTIFY
// to the recorded hosts, and the status callback to an RPC monitor's my_id.
import type { SmStatus, StatChge } from './protocol';
import type { MonitorCallback } from './store';

export interface NotifyTarget {
  /** The peer's address; its statd is found through its portmapper. */
  address: string;
}

export interface NotifyRequest {
  /** The server address the notices leave from; undefined: any local address (the node's identity, as sm-notify without -v). */
  from: string | undefined;
  targets: NotifyTarget[];
  args: StatChge;
  timeoutMs: number;
  concurrency: number;
  signal: AbortSignal;
  /** Called as each host answers. */
  onNotified(address: string): void;
}

export interface NsmSender {
  /** Resolves when every target answered or the time ran out; never rejects for a single host. */
  notifyHosts(req: NotifyRequest): Promise<void>;
  /** statd's status callback to an RPC monitor's my_id after the host rebooted. */
  statusCallback(cb: MonitorCallback, status: SmStatus): Promise<void>;
}
