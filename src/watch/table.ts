// The kernel's address table as rtnetlink describes it, folded from dumps and notifications,
// and the changes of its *local* view: an address counts while it is configured on a link that
// is up and running (an IPv4 address survives `ip link set down` in the kernel but stops being usable; it is
// usable again when the link comes back). Shared by the netlink and replay sources.
import {
  AF_INET, AF_INET6, IFA_F_DADFAILED, IFA_F_DEPRECATED, IFA_F_OPTIMISTIC, IFA_F_TENTATIVE, IFF_RUNNING, IFF_UP,
  type AddressMessage, type LinkMessage, type RtnetlinkMessage,
} from './codec/netlink';
import type { AddressChange, AddressFlags, SourceName } from './types';

interface Entry {
  address: string;
  family: 4 | 6;
  prefixLen: number;
  ifindex: number;
  label?: string;
  flags: AddressFlags;
}

/** A link carries local addresses while it is up and running (libuv's getifaddrs view agrees). */
const linkUsable = (flags: number): boolean => (flags & IFF_UP) !== 0 && (flags & IFF_RUNNING) !== 0;

const keyOf = (address: string, ifindex: number): string => `${address}%${ifindex}`;

function addressFlags(f: number): AddressFlags {
  const out: AddressFlags = {};
  // An optimistic address (RFC 4429) is usable while DAD runs, although the kernel marks it tentative too.
  if (f & IFA_F_TENTATIVE && !(f & IFA_F_OPTIMISTIC)) out.tentative = true;
  if (f & IFA_F_DADFAILED) out.dadfailed = true;
  if (f & IFA_F_DEPRECATED) out.deprecated = true;
  return out;
}

const sameFlags = (a: AddressFlags, b: AddressFlags): boolean =>
  !!a.tentative === !!b.tentative && !!a.dadfailed === !!b.dadfailed && !!a.deprecated === !!b.deprecated;

function entryOf(m: AddressMessage): Entry | undefined {
  if (!m.local || (m.family !== AF_INET && m.family !== AF_INET6)) return undefined;
  return {
    address: m.local,
    family: m.family === AF_INET ? 4 : 6,
    prefixLen: m.prefixLen,
    ifindex: m.ifindex,
    ...(m.label !== undefined && { label: m.label }),
    flags: addressFlags(m.flags),
  };
}

export class AddressTable {
  /** ifindex → up and running; a link never described counts as up (addresses may be dumped before links). */
  private readonly links = new Map<number, boolean>();
  /** ifindex → key → entry: every configured address. */
  private readonly addrs = new Map<number, Map<string, Entry>>();
  /** key → entry: the local view last reported downstream. */
  private readonly reported = new Map<string, Entry>();

  constructor(private readonly source: SourceName) {}

  /** The addresses currently reported as local. */
  local(): AddressChange[] {
    return [...this.reported.values()].map((e) => this.change(e, 'added', 0));
  }

  /** Folds one notification in; returns the changes of the local view. */
  apply(m: RtnetlinkMessage, at: number): AddressChange[] {
    if (m.kind === 'address') {
      const e = entryOf(m);
      if (!e) return [];
      const key = keyOf(e.address, e.ifindex);
      let onLink = this.addrs.get(e.ifindex);
      if (m.op === 'new') {
        if (!onLink) this.addrs.set(e.ifindex, (onLink = new Map()));
        onLink.set(key, e);
      } else {
        onLink?.delete(key);
      }
      return this.sync([key], at);
    }
    if (m.kind === 'link') {
      const keys = new Set(this.addrs.get(m.ifindex)?.keys());
      if (m.op === 'del') {
        this.links.delete(m.ifindex);
        this.addrs.delete(m.ifindex);
      } else {
        this.links.set(m.ifindex, linkUsable(m.flags));
      }
      // Include what was reported on that link even if the table lost it (RTM_DELADDR seen first).
      for (const [k, e] of this.reported) if (e.ifindex === m.ifindex) keys.add(k);
      return this.sync(keys, at);
    }
    return [];
  }

  /**
   * Replaces the table with a full dump (links and/or addresses of the given families) and
   * returns the difference against what was reported: the heart of a resync after an overflow.
   */
  replace(dump: { links?: LinkMessage[]; addresses?: AddressMessage[]; families?: Array<4 | 6> }, at: number): AddressChange[] {
    if (dump.links) {
      this.links.clear();
      for (const l of dump.links) if (l.op === 'new') this.links.set(l.ifindex, linkUsable(l.flags));
    }
    if (dump.addresses) {
      const families = dump.families ?? [4, 6];
      for (const onLink of this.addrs.values()) for (const [k, e] of onLink) if (families.includes(e.family)) onLink.delete(k);
      for (const m of dump.addresses) {
        const e = entryOf(m);
        if (!e || m.op !== 'new') continue;
        let onLink = this.addrs.get(e.ifindex);
        if (!onLink) this.addrs.set(e.ifindex, (onLink = new Map()));
        onLink.set(keyOf(e.address, e.ifindex), e);
      }
    }
    const keys = new Set(this.reported.keys());
    for (const onLink of this.addrs.values()) for (const k of onLink.keys()) keys.add(k);
    return this.sync(keys, at);
  }

  /** Brings the reported view of these keys in line with the table. */
  private sync(keys: Iterable<string>, at: number): AddressChange[] {
    const out: AddressChange[] = [];
    for (const key of keys) {
      const ifindex = Number(key.slice(key.lastIndexOf('%') + 1));
      const e = this.links.get(ifindex) === false ? undefined : this.addrs.get(ifindex)?.get(key);
      const was = this.reported.get(key);
      if (e && (!was || !sameFlags(was.flags, e.flags))) {
        this.reported.set(key, e);
        out.push(this.change(e, 'added', at));
      } else if (!e && was) {
        this.reported.delete(key);
        out.push(this.change(was, 'removed', at));
      }
    }
    return out;
  }

  private change(e: Entry, kind: 'added' | 'removed', at: number): AddressChange {
    const flags = kind === 'added' && (e.flags.tentative || e.flags.dadfailed || e.flags.deprecated) ? { flags: { ...e.flags } } : {};
    return {
      address: e.address,
      family: e.family,
      prefixLen: e.prefixLen,
      ifindex: e.ifindex,
      ...(e.label !== undefined && { label: e.label }),
      kind,
      source: this.source,
      at,
      ...flags,
    };
  }
}
