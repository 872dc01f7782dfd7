// The node's own addresses. Linux's lockd listens on every local address, and rpcbind's wildcard
// registration tells clients so: lockdropd serves NLM and statd on every local address too, not
// only on the floating ones. The others never fail over: a lock taken through one is never
// dropped by a floating address's failover, nor when the address itself goes (as with lockd).
// Their hosts are filed under the node's one identity (NODE_IDENTITY): at start it gets a new
// state number, its addresses a grace period when it has hosts that may reclaim, and its hosts
// SM_NOTIFY (sent from whichever local address routes to each, as sm-notify does).
import type { Logger } from 'pino';
import type { Listeners, NotifyOutcome } from '../failover';
import type { GracePeriod, GraceScope } from '../locks';
import { isLinkLocal, isLoopback } from '../net';
import { NODE_IDENTITY } from '../nsm';
import type { AddressEvent } from '../watch/types';

/**
 * One address's sockets, kept open while any owner needs them: failover while it holds a floating
 * address, the node while its own address is there (a reload can make one the other).
 */
export class SharedListeners {
  private readonly owners = new Map<string, Set<string>>();

  constructor(private readonly inner: Listeners) {}

  /** The listeners as one owner sees them. */
  of(owner: string): Listeners {
    return {
      addAddress: async (address) => {
        const set = this.owners.get(address) ?? new Set<string>();
        this.owners.set(address, set);
        set.add(owner);
        try {
          await this.inner.addAddress(address); // a no-op when another owner opened them
        } catch (err) {
          set.delete(owner);
          throw err;
        }
      },
      removeAddress: async (address) => {
        const set = this.owners.get(address);
        set?.delete(owner);
        if (set?.size) return;
        this.owners.delete(address);
        await this.inner.removeAddress(address);
      },
    };
  }
}

export interface NodeAddressesOptions {
  listeners: Listeners;
  monitors: {
    activate(identity: string): Promise<{ records: number }>;
    bumpState(identity: string): Promise<number>;
    notify(identity: string): Promise<NotifyOutcome>;
  };
  grace: { start(scope: GraceScope, seconds: number): GracePeriod };
  graceSeconds: () => number;
  isFloating(address: string): boolean;
  log?: Logger;
}

export class NodeAddresses {
  /** Local addresses up now (from the events), floating or not. */
  private readonly present = new Set<string>();
  private readonly served = new Set<string>();
  /** While the node's grace runs, an address of its that (re)appears gets the rest of it. */
  private graceUntil = 0;

  constructor(private readonly opts: NodeAddressesOptions) {}

  /**
   * Serves the node's addresses present now, then starts the node's identity: state, grace,
   * notify — none of them after a planned restart (`resumed`): its hosts saw no reboot.
   */
  async start(present: readonly string[], served: readonly string[], resumed = false): Promise<void> {
    for (const a of served) this.served.add(a);
    for (const a of present) this.present.add(a);
    await Promise.all(present.filter((a) => this.isOwn(a)).map((a) => this.serve(a)));
    const { records } = await this.opts.monitors.activate(NODE_IDENTITY);
    if (resumed) {
      this.opts.log?.info({ identity: NODE_IDENTITY, monitors: records, addresses: [...this.served] }, `node: serving ${this.served.size} own addresses after a planned restart: no grace, state unchanged, nobody notified`);
      return;
    }
    const state = await this.opts.monitors.bumpState(NODE_IDENTITY);
    if (records > 0) {
      const seconds = this.opts.graceSeconds();
      this.graceUntil = Date.now() + seconds * 1000;
      for (const a of this.served) this.opts.grace.start({ kind: 'address', address: a }, seconds);
    }
    this.opts.log?.info({ identity: NODE_IDENTITY, state, monitors: records, addresses: [...this.served] }, `node: serving ${this.served.size} own addresses, state ${state}, notifying ${records} hosts`);
    if (records === 0) return;
    this.opts.monitors.notify(NODE_IDENTITY).then(
      (r) => this.opts.log?.info({ identity: NODE_IDENTITY, notified: r.notified.length, failed: r.failed, ms: r.ms }, `node: SM_NOTIFY (state ${r.state}) answered by ${r.notified.length} hosts`),
      (err: Error) => this.opts.log?.error({ err: err.message }, `node: SM_NOTIFY failed: ${err.message}`),
    );
  }

  /** An address event (floating or not): the node serves its own addresses while they are there. */
  handle(ev: AddressEvent): void {
    if (ev.type === 'up') {
      this.present.add(ev.address);
      if (this.isOwn(ev.address)) void this.serve(ev.address);
    } else if (ev.type === 'down') {
      this.present.delete(ev.address);
      if (this.served.delete(ev.address)) {
        this.opts.listeners.removeAddress(ev.address).catch((err: Error) => this.opts.log?.warn({ address: ev.address, err: err.message }, 'node: closing listeners failed'));
      }
    }
  }

  /** Whether the node serves this address as one of its own (loopback included). */
  serves(address: string): boolean {
    return this.served.has(address);
  }

  /** After a reload: an address present that is no longer floating is served by the node. */
  refresh(): void {
    for (const a of this.present) if (this.isOwn(a)) void this.serve(a);
  }

  private isOwn(address: string): boolean {
    return !this.served.has(address) && !this.opts.isFloating(address) && !isLinkLocal(address) && !isLoopback(address);
  }

  private async serve(address: string): Promise<void> {
    this.served.add(address);
    try {
      await this.opts.listeners.addAddress(address);
    } catch (err) {
      this.served.delete(address);
      this.opts.log?.warn({ address, err: (err as Error).message }, `node: cannot serve ${address}: ${(err as Error).message}`);
      return;
    }
    const left = this.graceUntil - Date.now();
    if (left > 0) this.opts.grace.start({ kind: 'address', address }, left / 1000);
    this.opts.log?.debug({ address }, 'node: serving an own address');
  }
}
