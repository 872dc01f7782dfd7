// The cluster store's port: a key/value journal per server address that every node follows.
// It knows nothing of locks (the lock table encodes its entries as values) nor of where the
// journals live (a shared directory today, etcd later): only addresses, keys, values and positions.
import type { Observable } from 'rxjs';

/** One change to an address's state: a value put under its key, or the key removed (null). */
export interface JournalRecord {
  key: string;
  value: Buffer | null;
}

export interface JournalChange {
  address: string;
  /** In journal order; a key may appear more than once (the last one wins). */
  records: JournalRecord[];
  /**
   * The address's whole state replaced by `records` (all puts): the first read of a journal, a
   * compaction by another node, a journal truncated or removed (then `records` is empty).
   */
  reset: boolean;
}

/** A part of a journal the store will not trust: a torn or corrupt tail, an unreadable header. */
export interface JournalFault {
  address: string;
  /** Where it is, in the adapter's words (a file's path). */
  where: string;
  /** Byte position of the first untrusted byte. */
  position: number;
  reason: string;
  /** Cut off by this node as the journal's new holder (takeOver); otherwise only skipped. */
  truncated: boolean;
}

export interface BarrierResult {
  /** Live nodes whose copy of the journal reached its end. */
  acked: string[];
  /** Live nodes that did not answer before the timeout. */
  missing: string[];
  ms: number;
}

/** Whether the store can make appends durable now (etcd: reachable with quorum). */
export interface StoreHealth {
  ok: boolean;
  /** Why not, in an operator's words. */
  reason?: string;
}

export interface ClusterStore {
  /**
   * Queues records of an address this node holds (after takeOver; the lease holder is the only
   * writer of its address's journal). Throws when it does not hold it or a record is malformed.
   */
  append(address: string, records: JournalRecord[]): void;
  /**
   * Resolves once everything appended before the call is durable. Group commit: the appends of
   * one turn of the event loop share one write and one fdatasync per address.
   */
  commit(): Promise<void>;
  /**
   * Becomes the address's writer: reads its journal to its end and returns its live entries. A
   * torn or corrupt tail is reported (faults$ and one error line) and cut off, never applied.
   */
  takeOver(address: string): Promise<Map<string, Buffer>>;
  /** Stops writing the address's journal (once what was appended is durable) and follows it again. */
  release(address: string): Promise<void>;
  /**
   * Every address's journal as it changes, this node's own appends included (emitted once
   * durable, before commit() resolves). A subscriber first gets a reset per known journal with
   * its whole content, then the changes as they are read.
   */
  readonly changes$: Observable<JournalChange>;
  /**
   * Untrusted journal parts, as found (followers report a bad tail once it has stayed put). A
   * subscriber first gets those still standing.
   */
  readonly faults$: Observable<JournalFault>;
  /**
   * For a planned drop: resolves once every live node (see liveNodes) has applied the address's
   * journal up to its end as of the call (after a commit), or at timeoutMs, naming the live
   * nodes that did not answer. A node that stops being live while it waits is not waited for.
   */
  barrier(address: string, timeoutMs: number): Promise<BarrierResult>;
  /** Live nodes other than this one: a heartbeat seen change within the liveness bound, on this node's clock. */
  liveNodes(): string[];
  /** Whether appends can be made durable now; a store that cannot lose its medium (a directory) may leave it out. */
  health?(): StoreHealth;
  /** Commits, stops following, and withdraws this node from the live set. */
  close(): Promise<void>;
}
