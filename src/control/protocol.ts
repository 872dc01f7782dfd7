// The control socket's protocol: newline-delimited JSON. A request is one object per line with an
// optional `id` echoed in the reply; a reply is {id, ok: true, result} or {id, ok: false, error}.
// `watch` answers with {id, ok: true, result: "watching"} and then {id, event} lines until the
// client closes. Shared by the daemon (server, src/daemon/control.ts) and lockdropctl (client,
// src/cli/client.ts), each through this folder's index.
import { z } from 'zod';
import { isAddress } from '../net';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const ip = z.string().refine(isAddress, (s) => ({ message: `"${s}" is not an IP address` }));

export const requestSchema = z.discriminatedUnion('cmd', [
  z.object({ cmd: z.literal('status') }),
  /** file: a path on this node, whose locks are found by its kernel handle; fh: a wire handle, hex. */
  z.object({ cmd: z.literal('locks'), ip: ip.optional(), client: z.string().optional(), export: z.string().optional(), file: z.string().min(1).optional(), fh: z.string().regex(/^([0-9a-fA-F]{2})+$/, 'must be hex bytes').optional() }),
  z.object({
    cmd: z.literal('drop'),
    ip: ip.optional(),
    client: z.string().optional(),
    export: z.string().optional(),
    fsid: z.number().int().min(0).optional(),
  }),
  /** One of ip (a server address's grace) or export (an export's grace, on every address). */
  z.object({ cmd: z.literal('grace'), action: z.enum(['start', 'end']), ip: ip.optional(), export: z.string().min(1).optional(), seconds: z.number().positive().optional() }),
  z.object({ cmd: z.literal('monitors'), ip: ip.optional() }),
  z.object({ cmd: z.literal('notify'), ip }),
  z.object({ cmd: z.literal('watch') }),
  /** Re-reads the configuration file; answered once applied, or with the problems of the new file. */
  z.object({ cmd: z.literal('reload') }),
  /** The effective exports table: each entry with where it came from (the configuration, knfsd's etab, Ganesha's configuration). */
  z.object({ cmd: z.literal('exports') }),
  /** A planned restart keeping every lock (a new lockdropd inherits the descriptions): answered before it starts. */
  z.object({ cmd: z.literal('restart') }),
  /** Sets the log level until the next start or reload (Ganesha's `ganesha_mgr set_log`). */
  z.object({ cmd: z.literal('log-level'), level: z.enum(LOG_LEVELS) }),
]);

export type ControlRequest = z.infer<typeof requestSchema>;
/** `log-level`: the level now and the one it replaced. */
export interface LogLevelReport {
  level: LogLevel;
  previous: string;
}

export type LocksFilter = Omit<Extract<ControlRequest, { cmd: 'locks' }>, 'cmd'>;
export type DropTarget = Omit<Extract<ControlRequest, { cmd: 'drop' }>, 'cmd'>;
export type GraceTarget = { ip?: string; export?: string };

/** One held lock, as `locks --json` prints it. Offsets and lengths are decimal strings (exact u64). */
export interface LockView {
  server: string;
  client: string;
  callerName: string;
  clientAddress: string;
  svid: number;
  oh: string;
  offset: string;
  /** "0" means to end of file. */
  length: string;
  exclusive: boolean;
  fh: string;
  export: string | null;
  /** ISO 8601. */
  since: string;
  /** An arrived address's journal entry its client has not reclaimed yet (held for it on the file). */
  awaitingReclaim: boolean;
}

export interface AddressStatus {
  address: string;
  /** Configured on this machine now. */
  present: boolean;
  /** NLM and statd answer on it here: a floating address this node holds, or one of the node's own. */
  served: boolean;
  /** Its removal was requested (bpf intent): no new locks through it. */
  draining: boolean;
  /** End of this address's grace period (ISO 8601), or null. */
  grace: string | null;
  locks: number;
  monitors: number;
  /** Another node whose live lease keeps this node from serving the address (split brain), or null. */
  heldBy: string | null;
  /** Entries of the address's lock journal, as this node's index has them: what the cluster keeps for their owners. */
  journal: number;
  /** Its reclaim after arriving here, while locks await it: how many of how many, and of how many hosts; else null. */
  reclaim: { awaiting: number; total: number; hosts: number; since: string } | null;
}

export interface SourceStatus {
  name: string;
  active: boolean;
  /** Why it is not active (or a note about how it runs). */
  reason?: string;
}

/** `restart`: the process being replaced; the new one answers `status` with another pid once ready. */
export interface RestartReport {
  pid: number;
}

export interface StatusReport {
  pid: number;
  version: string;
  startedAt: string;
  /** Every address present at start is served (listeners, arrival, rpcbind): what READY=1 tells systemd. */
  ready: boolean;
  nlmPort: number;
  nsmPort: number;
  rpcbind: boolean;
  sources: SourceStatus[];
  addresses: AddressStatus[];
  locks: number;
  blocked: number;
  monitors: number;
  /** Grace periods of exports (every address), started by hand. */
  exportGraces: { export: string; grace: string }[];
  /** A grace period that covers every address (rare: set by hand), or null. */
  globalGrace: string | null;
  /** Real-file locking: the exports locked on their files, open descriptions, kernel waits, the budget. */
  files: FilesStatus;
  /** The cluster store: which, and whether it can make grants durable now (etcd reachable, with quorum). */
  store?: { kind: 'directory' | 'etcd' | 'none'; ok: boolean; reason: string | null };
}

export interface FilesStatus {
  /** Exports whose locks are OFD locks on the files (the others keep them in memory). */
  exports: string[];
  /** Why exports cannot be locked on their files, when that is so (no native addon). */
  unavailable: string | null;
  open: number;
  waits: number;
  maxOpen: number;
  budgetRefusals: number;
}

export interface MonitorView {
  server: string;
  host: string;
  address: string | null;
  state: number | null;
}

export interface DropReport {
  target: string;
  locks: number;
  shares: number;
  blocked: number;
  clients: number;
  woken: number;
  ms: number;
}

export interface NotifyReport {
  address: string;
  notified: string[];
  failed: string[];
}

export interface GraceReport {
  /** The server address or the export path. */
  target: string;
  scope: 'address' | 'export';
  grace: string | null;
}

export interface ReloadReport {
  /** Keys whose value changed. */
  changed: string[];
  /** Changed keys that only a restart applies (ports, state directory, sources). */
  needsRestart: string[];
}

/** One export as `exports --json` prints it: the entry's fields (configuration keys) and its origin. */
export interface ExportView {
  path: string;
  from: 'config' | 'knfsd' | 'ganesha';
  /** The configuration's entry replaced the NFS server's of the same path. */
  overrides?: 'config' | 'knfsd' | 'ganesha';
  fsid?: number;
  uuid?: string;
  dev?: string;
  rootIno?: number;
  fsRoot?: boolean;
  ganeshaExportId?: number;
  fhPrefix?: string[];
  clients: string[];
  secure: boolean;
  fileLocks?: boolean;
  rootSquash?: boolean;
  allSquash?: boolean;
  anonuid?: number;
  anongid?: number;
  noAuthNlm?: boolean;
}

export interface ExportsReport {
  exports: ExportView[];
  /** The NFS server's table lockdrop follows (`exportsFrom`), or null. */
  source: { server: 'knfsd' | 'ganesha'; file: string; readAt: string | null; error: string | null; notes: string[] } | null;
}

/** `lockdropctl check`: the daemon answers, is ready, and NLM and statd answer NULL on every held address. */
export interface CheckReport {
  ok: boolean;
  pid: number | null;
  /** Addresses where every NULL call was answered. */
  answered: string[];
  problems: string[];
}

/** One line of `watch`. */
export interface WatchEvent {
  at: string;
  kind: 'address' | 'drop' | 'grant' | 'release' | 'blocked' | 'grace' | 'notify' | 'overflow' | 'reload';
  address?: string;
  message: string;
  [field: string]: unknown;
}

/** An error reply; `problems` lists a refused configuration's bad keys, one `key: why` each. */
export type ControlReply = { id: unknown; ok: true; result: unknown } | { id: unknown; ok: false; error: string; problems?: string[] } | { id: unknown; event: WatchEvent };

/** The longest request line accepted; beyond it the connection is closed. */
export const MAX_REQUEST_BYTES = 64 * 1024;
