// knfsd's export table as exportfs leaves it in /var/lib/nfs/etab (nfs-utils putexportent):
// one line per (path, client), the path with \ooo escapes for spaces and specials, a tab, then
// `client(options)` with every option spelled out, followed by `,sec=FLAVOURS` and the flags that
// apply to those flavours (ro/rw, secure/insecure, root_squash, all_squash). Pure functions: the
// filesystem facts (its uuid, device, whether the path is its root) come from the caller.
import { isNetwork } from '../net';
import type { ExportEntry } from './table';

export interface EtabLine {
  path: string;
  /** The client spec as written: `*`, an address, a CIDR or address/netmask, a host name, `*.domain`, `@netgroup`, `gss/krb5`. */
  client: string;
  readOnly: boolean;
  /** exports(5) secure (the default): requests from a privileged port only. */
  secure: boolean;
  rootSquash: boolean;
  allSquash: boolean;
  /** insecure_locks / no_auth_nlm. */
  noAuthNlm: boolean;
  anonuid: number;
  anongid: number;
  /** fsid=N (fsid=root is 0). */
  fsid?: number;
  /** fsid=<32 hex digits>: the uuid knfsd puts in handles instead of the filesystem's. */
  uuid?: string;
  /** The flavours AUTH_SYS requests (NLM's) are checked under: false when no sec= list names sys. */
  sys: boolean;
}

export class EtabError extends Error {
  constructor(readonly line: number, message: string) {
    super(`etab line ${line}: ${message}`);
    this.name = 'EtabError';
  }
}

/** putexportent's escapes: `\ooo` (octal) for spaces, controls, `"`, `\` and `#`. */
const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** The 32 hex digits of an fsid= uuid as nfs-utils' get_uuid reads them (any other characters skipped). */
function uuidOption(v: string): string | undefined {
  const hex = v.replace(/[^0-9a-fA-F]/g, '');
  return hex.length === 32 ? hex.toLowerCase() : undefined;
}

/**
 * Parses etab text. Blank lines and `#` comments are skipped; a line that is not
 * `path<TAB>client(options)` throws EtabError naming it (exportfs never writes one).
 */
export function parseEtab(text: string): EtabLine[] {
  const out: EtabLine[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const m = /^(\S+)\s+(\S*?)\((.*)\)$/.exec(line);
    if (!m) throw new EtabError(i + 1, `"${line}" is not "path<TAB>client(options)"`);
    const path = unescape(m[1]!);
    if (!path.startsWith('/')) throw new EtabError(i + 1, `path "${path}" is not absolute`);
    const e: EtabLine = { path, client: m[2] || '*', readOnly: true, secure: true, rootSquash: true, allSquash: false, noAuthNlm: false, anonuid: 65534, anongid: 65534, sys: true };
    // Options before the first sec= apply to every flavour; after sec=LIST, only to LIST's.
    let applies = true;
    const secs: boolean[] = [];
    for (const opt of m[3]!.split(',')) {
      const [key, value] = opt.includes('=') ? [opt.slice(0, opt.indexOf('=')), opt.slice(opt.indexOf('=') + 1)] : [opt, undefined];
      switch (key) {
        case 'sec': {
          const flavours = (value ?? '').split(':');
          applies = flavours.includes('sys') || flavours.includes('unix');
          secs.push(applies);
          break;
        }
        case 'ro': if (applies) e.readOnly = true; break;
        case 'rw': if (applies) e.readOnly = false; break;
        case 'secure': if (applies) e.secure = true; break;
        case 'insecure': if (applies) e.secure = false; break;
        case 'root_squash': if (applies) e.rootSquash = true; break;
        case 'no_root_squash': if (applies) e.rootSquash = false; break;
        case 'all_squash': if (applies) e.allSquash = true; break;
        case 'no_all_squash': if (applies) e.allSquash = false; break;
        case 'secure_locks': case 'auth_nlm': e.noAuthNlm = false; break;
        case 'insecure_locks': case 'no_auth_nlm': e.noAuthNlm = true; break;
        case 'anonuid': case 'anongid': {
          const n = Number(value);
          if (!Number.isInteger(n)) throw new EtabError(i + 1, `${opt}: not a number`);
          // exportfs stores -1 and 65534 alike as the kernel takes them: a uid_t.
          e[key] = n < 0 ? n >>> 0 : n;
          break;
        }
        case 'fsid': {
          if (value === 'root') e.fsid = 0;
          else if (value !== undefined && /^(0x[0-9a-fA-F]+|\d+)$/.test(value)) e.fsid = Number(value) >>> 0;
          else if (value !== undefined && uuidOption(value)) e.uuid = uuidOption(value);
          else throw new EtabError(i + 1, `${opt}: neither a number nor a 32-digit uuid`);
          break;
        }
        default:
          // sync, wdelay, hide, crossmnt, subtree_check, acl, pnfs, mountpoint, refer=, squash_uids=…: nothing NLM checks.
          break;
      }
    }
    e.sys = secs.length === 0 || secs.includes(true);
    out.push(e);
  });
  return out;
}

/**
 * The clients of an export none of whose client specs matched an address (names that did not
 * resolve): an empty list would read as "every client", this network holds no source address.
 */
export const NO_CLIENT = '0.0.0.0/32';

/** What the node knows of an exported path's filesystem: what knfsd builds its handles from. */
export interface ExportedFilesystem {
  /** st_dev of the path, "major:minor". */
  dev: string;
  /** st_ino of the path: the export root's inode, in every handle type that carries one. */
  ino: number;
  /** The path is its filesystem's root (the kernel then uses the uuid types without an inode). */
  fsRoot: boolean;
  /** The uuid mountd hands the kernel for this path (mountdUuid), if the filesystem has one. */
  uuid?: string;
}

/** How a client spec reads as networks: `every` for `*`, `networks` for addresses/CIDRs, `name` to resolve, `unmatchable` otherwise. */
export type ClientSpec = { kind: 'every' } | { kind: 'networks'; networks: string[] } | { kind: 'name'; name: string } | { kind: 'unmatchable'; why: string };

/** A dotted netmask's prefix length (255.255.255.0 → 24), or undefined when it is not contiguous. */
function maskLength(mask: string): number | undefined {
  const parts = mask.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) return undefined;
  const bits = parts.reduce((acc, p) => acc * 256 + p, 0).toString(2).padStart(32, '0');
  return /^1*0*$/.test(bits) ? bits.indexOf('0') === -1 ? 32 : bits.indexOf('0') : undefined;
}

/** exports(5) client forms, as NLM can check them (by the request's source address). */
export function clientSpec(client: string): ClientSpec {
  if (client === '*' || client === '') return { kind: 'every' };
  const bare = client.replace(/^\[(.*)\]$/, '$1');
  if (isNetwork(bare)) return { kind: 'networks', networks: [bare] };
  const slash = bare.indexOf('/');
  if (slash > 0 && !bare.startsWith('gss/')) {
    const len = maskLength(bare.slice(slash + 1));
    const net = `${bare.slice(0, slash)}/${len}`;
    if (len !== undefined && isNetwork(net)) return { kind: 'networks', networks: [net] };
  }
  if (client.startsWith('@')) return { kind: 'unmatchable', why: `netgroup ${client}` };
  if (client.startsWith('gss/')) return { kind: 'unmatchable', why: `${client} (RPCSEC_GSS clients, never NLM's AUTH_SYS)` };
  if (/[*?[]/.test(client)) return { kind: 'unmatchable', why: `wildcard ${client}` };
  return { kind: 'name', name: client };
}

export interface KnfsdExports {
  entries: ExportEntry[];
  /** Things an operator should know: a client lockdrop cannot match, options that differ per client. */
  notes: string[];
}

/**
 * The exports table knfsd's etab makes: one entry per path, its clients the union of its lines'
 * (names as `resolved` gives them), identified the way knfsd's handles name it — fsid=N, else
 * the uuid (fsid=<uuid>, else the filesystem's), with the export root's inode when the path is
 * not its filesystem's root, and always the device numbers (the handles of a filesystem without
 * uuid). A path the node cannot see (`fs` undefined) is left out with a note. Where the lines of
 * one path differ, the entry takes the most permissive (insecure, insecure_locks), as a client
 * allowed by one line is allowed: noted. A line for RPCSEC_GSS only serves no NLM client.
 */
export function knfsdExports(lines: readonly EtabLine[], fs: (path: string) => ExportedFilesystem | undefined, resolved: ReadonlyMap<string, readonly string[]> = new Map()): KnfsdExports {
  const notes: string[] = [];
  const byPath = new Map<string, EtabLine[]>();
  for (const l of lines) byPath.set(l.path, [...(byPath.get(l.path) ?? []), l]);
  const entries: ExportEntry[] = [];
  const fsids = new Map<number, string>();
  for (const [path, all] of byPath) {
    const ls = all.filter((l) => l.sys);
    if (ls.length === 0) {
      notes.push(`${path}: exported with RPCSEC_GSS only (no sec=sys): no NLM client can lock through it`);
      continue;
    }
    const f = fs(path);
    if (!f) {
      notes.push(`${path}: in etab but not on this node: not served`);
      continue;
    }
    const clients = new Set<string>();
    let every = false;
    for (const l of ls) {
      const spec = clientSpec(l.client);
      if (spec.kind === 'every') every = true;
      else if (spec.kind === 'networks') spec.networks.forEach((n) => clients.add(n));
      else if (spec.kind === 'name') {
        const as = resolved.get(spec.name) ?? [];
        if (as.length === 0) notes.push(`${path}: client ${spec.name} does not resolve: none of its requests is allowed`);
        as.forEach((a) => clients.add(a));
      } else {
        every = true;
        notes.push(`${path}: client ${spec.why} cannot be matched by address: every client may lock (knfsd still checks its mounts)`);
      }
    }
    const differ = (k: keyof EtabLine) => new Set(ls.map((l) => JSON.stringify(l[k]))).size > 1;
    const first = ls[0]!;
    for (const k of ['secure', 'noAuthNlm', 'rootSquash', 'allSquash', 'anonuid', 'anongid', 'fsid', 'uuid'] as const) {
      if (differ(k)) notes.push(`${path}: ${k} differs between its clients (${ls.map((l) => `${l.client}: ${l[k]}`).join(', ')}): lockdrop applies one value to all`);
    }
    const entry: ExportEntry = {
      path,
      clients: every ? [] : [...clients],
      secure: ls.every((l) => l.secure),
      fileLocks: true,
      rootSquash: ls.some((l) => l.rootSquash),
      allSquash: ls.some((l) => l.allSquash),
      anonuid: first.anonuid,
      anongid: first.anongid,
      noAuthNlm: ls.some((l) => l.noAuthNlm),
    };
    if (first.fsid !== undefined) {
      const other = fsids.get(first.fsid);
      if (other !== undefined) {
        notes.push(`${path}: fsid=${first.fsid} is ${other}'s too: left out (knfsd cannot tell their handles apart either)`);
        continue;
      }
      fsids.set(first.fsid, path);
      entry.fsid = first.fsid;
    }
    else {
      const uuid = first.uuid ?? f.uuid;
      if (uuid !== undefined) entry.uuid = uuid;
      entry.dev = f.dev;
      entry.rootIno = f.ino;
      entry.fsRoot = f.fsRoot;
    }
    if (!every && clients.size === 0) entry.clients = [NO_CLIENT];
    entries.push(entry);
  }
  return { entries, notes };
}

/** statfs f_type of the filesystems whose blkid uuid mountd does not use (nonblkid_filesystems). */
export const NON_BLKID_FILESYSTEMS: ReadonlySet<number> = new Set([0x2fc12fc1, 0x9123683e, 0xff534d42, 0x6969, 0x5346414f, 0x73757245, 0x1021994, 0x6e667364, 0x9fa0, 0x62656572, 0x64626720, 0x42494e4d, 0x858458f6, 0x73636673, 0x73717368]);

/**
 * The uuid mountd gives the kernel for a path (uuid_by_path type 0, then get_uuid): the blkid
 * UUID of its block device unless the filesystem is one of NON_BLKID_FILESYSTEMS (or blkid calls
 * it btrfs), else statfs's f_fsid as "%08x%08x"; its hex digits folded into 16 bytes. undefined:
 * neither (knfsd then names the export by its device numbers).
 */
export function mountdUuid(facts: { fsType: number; blkidUuid?: string; blkidType?: string; fsid?: readonly [number, number] }): string | undefined {
  const useBlkid = !NON_BLKID_FILESYSTEMS.has(facts.fsType) && facts.blkidType !== 'btrfs';
  let val: string | undefined = useBlkid && facts.blkidUuid ? facts.blkidUuid : undefined;
  if (val === undefined && facts.fsid && (facts.fsid[0] || facts.fsid[1])) val = facts.fsid.map((w) => (w >>> 0).toString(16).padStart(8, '0')).join('');
  if (val === undefined) return undefined;
  const u = Buffer.alloc(16);
  let i = 0;
  for (const c of val) {
    if (!/[0-9a-fA-F]/.test(c)) continue;
    let n = parseInt(c, 16);
    if ((i & 1) === 0) n <<= 4;
    u[i >> 1]! ^= n;
    i = (i + 1) % 32;
  }
  return u.toString('hex');
}
