// The table's few, object-shaped entries: hosts, server addresses and exports (a handful each, so
// objects are cheap), and what few files have — queued requests and share reservations. The bulk
// (locks, files, owners, holders) is typed-array records (records.ts).
import type { Pos } from './range';
import type { BlockGranted } from './types';

export class HostEntry {
  /** Owners interned under this host. */
  owners = 0;
  readonly shares = new Set<Share>();
  /** Its owners' queued requests: how a drop by host finds an owner that holds nothing. */
  readonly blocks = new Set<Block>();
  marked = false;
  constructor(
    readonly id: number,
    readonly key: string,
  ) {}
}

/** One client host at one server address: its holders there (a list), and what refers to it. */
export class HostAtAddress {
  /** The first of its holders through the address (HolderRecords.aNext chains them). */
  head = 0;
  /** Holders, shares and queued requests of the host through the address. */
  refs = 0;
  constructor(readonly host: HostEntry) {}
}

export class AddressEntry {
  /** Locks held through this address, and those of them awaiting their owner's reclaim. */
  count = 0;
  awaiting = 0;
  readonly shares = new Set<Share>();
  readonly blocks = new Set<Block>();
  /** Host id -> that host's holders and references here. */
  readonly hosts = new Map<number, HostAtAddress>();
  constructor(
    readonly id: number,
    readonly address: string,
  ) {}
}

export class ExportEntry {
  /** The first of its files (FileRecords.xNext chains them), and how many. */
  head = 0;
  files = 0;
  constructor(
    readonly id: number,
    readonly key: string,
  ) {}
}

/**
 * A file's queued requests in arrival order. A removal leaves a hole (O(1): a grant storm must not
 * shift the array once per grant); holes are swept when they outnumber the requests.
 */
export class BlockQueue {
  private items: (Block | null)[] = [];
  size = 0;
  push(b: Block): void {
    b.slot = this.items.length;
    this.items.push(b);
    this.size++;
  }
  remove(b: Block): void {
    this.items[b.slot] = null;
    this.size--;
    if (this.size === 0) this.items = [];
    else if (this.items.length > 16 && this.size * 2 < this.items.length) this.sweep();
  }
  private sweep(): void {
    const live = this.toArray();
    live.forEach((b, i) => (b.slot = i));
    this.items = live;
  }
  toArray(): Block[] {
    return this.items.filter((b): b is Block => b !== null);
  }
  /** The requests overlapping [s, e], in arrival order. */
  overlapping(s: Pos, e: Pos): Block[] {
    return this.items.filter((b): b is Block => b !== null && b.start <= e && b.end >= s);
  }
}

/** What few files have: queued blocks and share reservations. */
export class FileExtra {
  /** Blocked requests in arrival order. */
  readonly queue = new BlockQueue();
  readonly shares: Share[] = [];
}

export interface Block {
  /** File and owner ids: both stay while the request is queued. */
  file: number;
  owner: number;
  addr: AddressEntry;
  start: Pos;
  end: Pos;
  exclusive: boolean;
  waiter: unknown;
  /** Still queued (removeBlock clears it): a kernel wait finishing later must know. */
  queued: boolean;
  /** Its place in the file's BlockQueue. */
  slot: number;
  /** The cancel of a wait in the kernel for a holder outside the table, while one runs. */
  kernelWait: (() => void) | null;
}

export interface Share {
  /** File id: it stays while the reservation does. */
  file: number;
  host: HostEntry;
  oh: string;
  mode: number;
  access: number;
  addr: AddressEntry;
}

// A grant a client may still refuse, as the undo log keeps it (grants.ts).
export interface Span {
  start: Pos;
  end: Pos;
}

/** One of the owner's locks as an undo puts it back. */
export interface Piece extends Span {
  exclusive: boolean;
  address: string;
}

export interface GrantEntry extends Span {
  g: BlockGranted;
  /** The file's key (ids are reused once a file is freed). */
  key: string;
  /** What the owner held on [start, end] before this grant, as far as no earlier undo changed it. */
  prior: Piece[];
}

