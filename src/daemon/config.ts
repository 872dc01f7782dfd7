// lockdropd's configuration: embedded defaults, an optional YAML/JSON file, then flags on top.
// Validated with zod at start and on every reload; errors name the key and say why.
import { readFileSync } from 'node:fs';
import { endianness } from 'node:os';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { uuidBytes } from '../exports';
import { LOG_LEVELS } from '../control';
import { isAddress, isNetwork, normaliseAddress } from '../net';

const network = z.string().refine(isNetwork, (s) => ({ message: `"${s}" is not an address or CIDR network` }));
const address = z.string().refine(isAddress, (s) => ({ message: `"${s}" is not an IP address` }));
const port = z.number().int().min(0).max(65535);
const seconds = z.number().positive();

const exportSchema = z
  .object({
    path: z.string().startsWith('/', 'must be an absolute path'),
    fsid: z.number().int().min(0).max(0xffffffff).optional(),
    uuid: z
      .string()
      .refine((s) => {
        try {
          uuidBytes(s);
          return true;
        } catch {
          return false;
        }
      }, 'must be 32 hex digits (dashes or colons allowed)')
      .optional(),
    dev: z.string().regex(/^\d+:\d+$/, 'must be "major:minor"').optional(),
    rootIno: z.number().int().min(0).max(0xffffffff).optional(),
    /** The path is its filesystem's root (knfsd's uuid handles without an inode name it); false: a directory within. */
    fsRoot: z.boolean().optional(),
    /** NFS-Ganesha's Export_Id for this path (its handles carry it). */
    ganeshaExportId: z.number().int().min(0).max(0xffff).optional(),
    fhPrefix: z.array(z.string().regex(/^([0-9a-fA-F]{2})+$/, 'must be hex bytes')).optional(),
    clients: z.array(network).default([]),
    secure: z.boolean().default(true),
    /** Locks on the real files under path (default); false: in lockdrop's memory only. */
    fileLocks: z.boolean().default(true),
    /** exports(5) squash options (root_squash by default; anonuid/anongid 65534): whom a client acts as when its access to a file is checked. */
    rootSquash: z.boolean().optional(),
    allSquash: z.boolean().optional(),
    anonuid: z.number().int().min(0).max(0xfffffffe).optional(),
    anongid: z.number().int().min(0).max(0xfffffffe).optional(),
    /** exports(5) insecure_locks / no_auth_nlm: locks need no access to the file. */
    noAuthNlm: z.boolean().optional(),
  })
  .strict();

export { LOG_LEVELS };
export const LOG_FORMATS = ['json', 'text'] as const;
export const SOURCES = ['netlink', 'bpf', 'poll'] as const;

export const configSchema = z
  .object({
    /** NSM records (one folder per server address) and the daemon's lock file. */
    stateDir: z.string().min(1).default('/var/lib/lockdrop'),
    /** 0: an ephemeral port, found by clients through rpcbind (as Linux lockd does by default). */
    nlmPort: port.default(0),
    nsmPort: port.default(0),
    /** auto: register, refused while another live lock manager holds NLM or statd; takeover: register over it. */
    rpcbind: z.enum(['auto', 'off', 'takeover']).default('auto'),
    /** The control socket; its directory is created 0700. */
    control: z.string().min(1).default('/run/lockdrop/control.sock'),
    /** Grace period per arriving address, seconds (nfsd's 90: covers NFSv4 leases of the same server). */
    grace: seconds.default(90),
    /** Swallow a removal undone within this many ms (0: drop at once). */
    holdDown: z.number().int().min(0).default(0),
    sources: z.array(z.enum(SOURCES)).nonempty('needs at least one source').default(['netlink', 'bpf', 'poll']),
    /** Seconds between poll snapshots. */
    pollInterval: seconds.default(2),
    /** Bytes of kernel buffer for address notifications; a burst beyond it is an overflow, healed by a re-dump. */
    netlinkReceiveBuffer: z.number().int().min(1).default(8 * 1024 * 1024),
    /** The floating addresses lockdrop manages (addresses or CIDRs); empty: every non-loopback address. */
    addresses: z.array(network).default([]),
    notify: z
      .object({
        /** Seconds to keep retrying SM_NOTIFY to hosts that do not answer (sm-notify: 15 min). */
        timeout: seconds.default(900),
        concurrency: z.number().int().positive().default(256),
      })
      .strict()
      .default({}),
    /**
     * TCP connections to each of NLM and statd. At `max` a new one closes the least recently active
     * idle connection (as Linux's svc_check_conn_limits); `perPeer` bounds one client address the
     * same way, so one address cannot crowd everyone else out. Raise `perPeer` for many clients behind one NAT.
     */
    connections: z
      .object({
        max: z.number().int().positive().default(1024),
        perPeer: z.number().int().positive().default(64),
      })
      .strict()
      .default({}),
    /** mon_name to send in SM_NOTIFY per server address (default: the address itself). */
    monNames: z
      .record(address, z.string().min(1))
      .default({})
      // Keys as lookups see them: normalised (`::ffff:a.b.c.d` → `a.b.c.d`, IPv6 in canonical form).
      .transform((m) => Object.fromEntries(Object.entries(m).map(([a, name]) => [normaliseAddress(a), name]))),
    exports: z.array(exportSchema).default([]),
    /**
     * Also serve the NFS server's own exports, followed as they change: knfsd's etab (as exportfs
     * leaves it) or Ganesha's EXPORT blocks. `exports` wins where both name a path. A string is
     * the server alone.
     */
    exportsFrom: z
      .preprocess(
        (v) => (typeof v === 'string' ? { server: v } : v),
        z
          .object({
            server: z.enum(['knfsd', 'ganesha']),
            /** Default /var/lib/nfs/etab (knfsd), /etc/ganesha/ganesha.conf (ganesha). */
            file: z.string().startsWith('/', 'must be an absolute path').optional(),
            /** Between two looks beside inotify's (another mount namespace's writes, a filesystem mounted later). */
            pollSeconds: seconds.default(5),
          })
          .strict(),
      )
      .nullable()
      .default(null),
    /**
     * Open files allowed for real-file locks (one per owner and file); beyond it a lock is refused
     * with denied_nolocks. Default: from RLIMIT_NOFILE, raised at start as far as allowed.
     */
    maxOpenFiles: z.number().int().positive().nullable().default(null),
    /** Byte order of the host-order words in knfsd handles (the NFS server's CPU). */
    fhByteOrder: z.enum(['little', 'big']).default(endianness() === 'LE' ? 'little' : 'big'),
    /** A handle that maps to no export, while exports are configured: allow or refuse. */
    unknownHandles: z.enum(['allow', 'deny']).default('allow'),
    /** "host:port" for the Prometheus /metrics endpoint; null: off. */
    metrics: z
      .string()
      .regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, 'must be "host:port" (IPv6 as "[addr]:port")')
      .nullable()
      .default(null),
    logLevel: z.enum(LOG_LEVELS).default('info'),
    /** json (the default: files, log shippers) or text (a level word, for the console and journald). */
    logFormat: z.enum(LOG_FORMATS).default('json'),
    /**
     * Seconds an address's holder lease (in its folder of the state directory) lasts without a
     * renewal; renewed every third of it. Another node waits that long for a holder that died.
     */
    leaseSeconds: z.number().min(1).default(10),
    /**
     * The lock journal (docs/cluster.md, "A lock survives its address's move"): every grant through
     * a floating address is durable in the state directory before it is answered, and every node
     * keeps the moved locks for their owners until they reclaim them. Off: a move keeps nothing.
     */
    journal: z
      .object({
        enabled: z.boolean().default(true),
        /** How long a planned drop waits for every live node to have the address's journal. */
        barrierMs: z.number().int().min(0).max(60_000).default(2000),
        /** Between two looks at every journal, for storage where inotify sees no other node's writes (NFS). */
        pollMs: z.number().int().min(5).max(10_000).default(100),
      })
      .strict()
      .default({}),
    /**
     * Where the cluster's state lives (docs/cluster.md): the state directory (the default), or
     * etcd — the lock journals, each node's liveness and the addresses' holder leases.
     */
    store: z
      .object({
        etcd: z
          .object({
            endpoints: z.array(z.string().regex(/^https?:\/\/[^\s/]+$/, 'must be "http(s)://host:port"')).min(1),
            /** Every key under it: one lockdrop cluster per prefix. */
            prefix: z.string().regex(/^\/[^\s]*[^/\s]$/, 'must be an absolute key path such as /lockdrop/cluster-a (no trailing slash)').default('/lockdrop/default'),
            /** PEM files: the CA of the members' certificates; a client certificate and key when they ask for one. */
            tls: z.object({ ca: z.string().min(1), cert: z.string().min(1).optional(), key: z.string().min(1).optional() }).strict().refine((t) => (t.cert === undefined) === (t.key === undefined), 'cert and key go together').optional(),
            /** How long a grant waits for etcd to make it durable before it is refused (denied_nolocks). */
            commitTimeoutMs: z.number().int().min(50).max(60_000).default(2000),
          })
          .strict()
          .optional(),
      })
      .strict()
      .default({}),
    /** Run from a recorded trace (pcap, LINKTYPE_NETLINK) instead of live sources. */
    replay: z.string().nullable().default(null),
  })
  .strict()
  .superRefine((c, ctx) => {
    const seen = new Map<string, number>();
    c.exports.forEach((e, i) => {
      const prior = seen.get(e.path);
      if (prior !== undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['exports', i, 'path'], message: `duplicates exports.${prior}.path` });
      seen.set(e.path, i);
    });
    const ganesha = new Map<number, number>();
    c.exports.forEach((e, i) => {
      if (e.ganeshaExportId === undefined) return;
      const prior = ganesha.get(e.ganeshaExportId);
      if (prior !== undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['exports', i, 'ganeshaExportId'], message: `duplicates exports.${prior}.ganeshaExportId` });
      ganesha.set(e.ganeshaExportId, i);
    });
  });

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;

/** Keys SIGHUP applies without a restart; others are reported and wait for the next start. */
export const RELOADABLE: readonly (keyof Config)[] = ['addresses', 'exports', 'maxOpenFiles', 'logLevel', 'holdDown', 'fhByteOrder', 'unknownHandles', 'monNames', 'notify', 'grace'];

export class ConfigError extends Error {
  constructor(
    message: string,
    /** One line per problem: `key: why`. */
    readonly problems: string[] = [],
  ) {
    super(problems.length ? `${message}:\n  ${problems.join('\n  ')}` : message);
    this.name = 'ConfigError';
  }
}

const keyOf = (path: (string | number)[]): string => (path.length ? path.join('.') : '(top level)');

function describeIssue(issue: z.ZodIssue): string {
  if (issue.code === 'unrecognized_keys') return `${issue.keys.map((k) => keyOf([...issue.path, k])).join(', ')}: unknown key`;
  return `${keyOf(issue.path)}: ${issue.message}`;
}

/** Validates a plain object (file contents merged with flags) into a Config. */
export function validateConfig(input: unknown, origin: string): Config {
  const r = configSchema.safeParse(input ?? {});
  if (!r.success) throw new ConfigError(`invalid configuration (${origin})`, r.error.issues.map(describeIssue));
  return r.data;
}

/** Reads a YAML or JSON file (YAML is a superset of JSON) into a plain object. */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text, { prettyErrors: true });
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid YAML/JSON`, [(err as Error).message.split('\n')[0]!]);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`config file ${path} must hold a mapping of keys`);
  return doc as Record<string, unknown>;
}

/** Defaults ← file ← flags (flags hold only what was given on the command line). */
export function loadConfig(file: string | undefined, flags: Partial<ConfigInput>): Config {
  const fromFile = file ? readConfigFile(file) : {};
  return validateConfig({ ...fromFile, ...flags }, file ? `${file} and flags` : 'flags and defaults');
}

/** Names of reloadable-or-not keys whose value changed between two configs. */
export function changedKeys(a: Config, b: Config): (keyof Config)[] {
  return (Object.keys(b) as (keyof Config)[]).filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
}
