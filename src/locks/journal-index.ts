// Every node's view of every address's lock journal: who holds what, through which address, as
// the journals say. The table consults it for a request its own locks allow: an entry of another
// owner that its holder may not hold right now (its address left, is in transit, or its node died)
// must not be handed to anyone else before the owner can reclaim it. The addresses this node
// serves are skipped: their entries are locks of its own table (held, or awaiting reclaim).
import { decodeJournalEntry, ownerKey, type JournalEntry } from './journal-entry';
import { parseRange, type Pos } from './range';

export interface JournalRecord {
  key: string;
  /** The entry's bytes; null when the owner holds nothing more there. */
  value: Buffer | null;
  /**
   * What `value` says, when its writer has it at hand (this node's own records, which the store
   * hands back as they were appended): the index then decodes nothing.
   */
  parsed?: ParsedEntry;
}

export interface IndexedLock {
  start: Pos;
  end: Pos;
  exclusive: boolean;
}

/** An entry as the index keeps it: its file key, its owner's locker key, its locks (none: not kept). */
export interface ParsedEntry {
  file: string;
  owner: string;
  locks: IndexedLock[];
}

/** An entry of the index: one owner's locks on one file through one address. */
export interface IndexedEntry {
  readonly address: string;
  readonly key: string;
  /** The table's file key (the handle as latin1) and the owner's locker key. */
  readonly file: string;
  readonly owner: string;
  readonly entry: JournalEntry;
  /** The entry's bytes as the journal has them. */
  readonly value: Buffer;
  readonly locks: readonly IndexedLock[];
}

class Indexed implements IndexedEntry {
  constructor(
    readonly address: string,
    readonly key: string,
    readonly file: string,
    readonly owner: string,
    readonly value: Buffer,
    readonly locks: readonly IndexedLock[],
    private decoded: JournalEntry | undefined,
  ) {}

  /** Decoded when first asked for (a refusal's holder, a listing): an entry of this node's own came parsed. */
  get entry(): JournalEntry {
    return (this.decoded ??= decodeJournalEntry(this.value));
  }
}

/** What the index keeps of an entry's bytes. Throws JournalEntryError. */
function parse(value: Buffer): ParsedEntry & { entry: JournalEntry } {
  return indexedForm(decodeJournalEntry(value));
}

/** An entry in the index's form: its file and owner keys, its ranges as positions. */
export function indexedForm(entry: JournalEntry): ParsedEntry & { entry: JournalEntry } {
  const locks: IndexedLock[] = [];
  for (const l of entry.locks) {
    const r = parseRange(l.offset, l.length);
    if (r) locks.push({ start: r.start, end: r.end, exclusive: l.exclusive });
  }
  return { file: entry.fh.toString('latin1'), owner: ownerKey(entry.owner), locks, entry };
}

export interface IndexUpdate {
  /** Files whose entries changed or went: their waiters may be grantable now. */
  files: Set<string>;
  /** Values that did not decode: reported, and the key treated as absent. */
  bad: { address: string; key: string; error: string }[];
}

export class JournalIndex {
  private readonly byFile = new Map<string, Set<IndexedEntry>>();
  private readonly byAddress = new Map<string, Map<string, IndexedEntry>>();

  /** Applies records of an address's journal; `reset`: they are its whole content (a first read, a compaction). */
  apply(address: string, records: readonly JournalRecord[], reset = false): IndexUpdate {
    const update: IndexUpdate = { files: new Set(), bad: [] };
    let mine = this.byAddress.get(address);
    // A reset (a take-over, a compaction) mostly says again what the index has: an entry of the
    // same bytes stays as it is, not decoded again, and its file's waiters need not look again.
    const before = reset ? mine : undefined;
    if (before) {
      this.byAddress.delete(address);
      mine = undefined;
    }
    for (const { key, value, parsed } of records) {
      const was = before?.get(key);
      if (was) {
        before!.delete(key);
        if (value !== null && was.value.equals(value)) {
          if (!mine) this.byAddress.set(address, (mine = new Map()));
          mine.set(key, was);
          continue;
        }
        this.unlink(was, update);
      }
      const old = mine?.get(key);
      if (old) {
        this.unlink(old, update);
        mine!.delete(key);
      }
      if (value === null) continue;
      let p: ParsedEntry & { entry?: JournalEntry };
      try {
        p = parsed ?? parse(value);
      } catch (err) {
        update.bad.push({ address, key, error: (err as Error).message });
        continue;
      }
      if (p.locks.length === 0) continue;
      const x = new Indexed(address, key, p.file, p.owner, value, p.locks, p.entry);
      if (!mine) this.byAddress.set(address, (mine = new Map()));
      mine.set(key, x);
      let onFile = this.byFile.get(x.file);
      if (!onFile) this.byFile.set(x.file, (onFile = new Set()));
      onFile.add(x);
      update.files.add(x.file);
    }
    for (const x of before?.values() ?? []) this.unlink(x, update);
    if (mine && mine.size === 0) this.byAddress.delete(address);
    return update;
  }

  /**
   * The first entry of another owner on the file that conflicts with [s, e] of this type, its
   * address not skipped; undefined when none does.
   */
  conflict(file: string, owner: string, s: Pos, e: Pos, exclusive: boolean, skip: (address: string) => boolean): IndexedEntry | undefined {
    const onFile = this.byFile.get(file);
    if (!onFile) return undefined;
    for (const x of onFile) {
      if (x.owner === owner || skip(x.address)) continue;
      for (const l of x.locks) if ((exclusive || l.exclusive) && l.start <= e && l.end >= s) return x;
    }
    return undefined;
  }

  /** The bytes of one entry, as the address's journal has them; undefined when it has none. */
  value(address: string, key: string): Buffer | undefined {
    return this.byAddress.get(address)?.get(key)?.value;
  }

  /** The entries of an address, as its journal has them. */
  entries(address: string): IndexedEntry[] {
    return [...(this.byAddress.get(address)?.values() ?? [])];
  }

  /** No address has an entry: the check every request makes first, in O(1). */
  get empty(): boolean {
    return this.byAddress.size === 0;
  }

  addresses(): string[] {
    return [...this.byAddress.keys()];
  }

  /** Entries of an address (of every address when none is given). */
  size(address?: string): number {
    if (address !== undefined) return this.byAddress.get(address)?.size ?? 0;
    let n = 0;
    for (const m of this.byAddress.values()) n += m.size;
    return n;
  }

  private unlink(x: IndexedEntry, update: IndexUpdate): void {
    const onFile = this.byFile.get(x.file);
    onFile?.delete(x);
    if (onFile && onFile.size === 0) this.byFile.delete(x.file);
    update.files.add(x.file);
  }
}
