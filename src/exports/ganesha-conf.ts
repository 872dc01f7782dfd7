// NFS-Ganesha's configuration (ganesha.conf): blocks `NAME { key = value; ... }`, nested
// (EXPORT holds CLIENT and FSAL blocks), `#` comments, quoted strings, comma-separated lists,
// `%include "file"`; names and keys are case-insensitive. What NLM needs of each EXPORT block:
// Export_Id (its handles carry it), Path, Protocols (NLM serves NFSv3 only), who may access it
// (the export's Access_Type for every client, CLIENT blocks for theirs), Squash and the anonymous
// ids, PrivilegedPort, and the FSAL (VFS handles embed the kernel's). Pure functions.
import { NO_CLIENT, clientSpec } from './etab';
import type { ExportEntry } from './table';

export interface GaneshaBlock {
  /** Lower case. */
  name: string;
  /** Keys lower case; values as written, lists split on commas, quotes removed. */
  params: Map<string, string[]>;
  blocks: GaneshaBlock[];
}

export class GaneshaConfError extends Error {
  constructor(readonly file: string, readonly line: number, message: string) {
    super(`${file}:${line}: ${message}`);
    this.name = 'GaneshaConfError';
  }
}

type Token = { t: 'word' | 'string' | '{' | '}' | '=' | ';' | ','; v: string; line: number };

function tokenize(text: string, file: string): Token[] {
  const out: Token[] = [];
  let line = 1;
  for (let i = 0; i < text.length; ) {
    const c = text[i]!;
    if (c === '\n') {
      line++;
      i++;
    } else if (/\s/.test(c)) i++;
    else if (c === '#') while (i < text.length && text[i] !== '\n') i++;
    else if ('{}=;,'.includes(c)) {
      out.push({ t: c as Token['t'], v: c, line });
      i++;
    } else if (c === '"' || c === "'") {
      const end = text.indexOf(c, i + 1);
      if (end < 0) throw new GaneshaConfError(file, line, 'unterminated quoted string');
      const v = text.slice(i + 1, end);
      out.push({ t: 'string', v, line });
      line += v.split('\n').length - 1;
      i = end + 1;
    } else {
      const m = /^[^\s{}=;,#"']+/.exec(text.slice(i))!;
      out.push({ t: 'word', v: m[0], line });
      i += m[0].length;
    }
  }
  return out;
}

/**
 * Parses ganesha.conf text into its blocks. `include` reads a `%include`d file (relative paths as
 * Ganesha takes them: as given); includes nest up to 10 deep. Throws GaneshaConfError naming
 * the file and line of a syntax error.
 */
export function parseGaneshaConf(text: string, file = 'ganesha.conf', include?: (path: string) => string, depth = 0): GaneshaBlock[] {
  // %include lines are spliced in first: they may stand between blocks or inside one.
  const lines = text.split('\n');
  const parts: string[] = [];
  for (const [n, l] of lines.entries()) {
    const m = /^\s*%include\s+(?:"([^"]+)"|'([^']+)'|(\S+))\s*$/.exec(l);
    if (!m) {
      parts.push(l);
      continue;
    }
    const path = m[1] ?? m[2] ?? m[3]!;
    if (!include) throw new GaneshaConfError(file, n + 1, `%include ${path}: includes are not read here`);
    if (depth >= 10) throw new GaneshaConfError(file, n + 1, `%include ${path}: nested more than 10 deep`);
    let body: string;
    try {
      body = include(path);
    } catch (err) {
      throw new GaneshaConfError(file, n + 1, `%include ${path}: ${(err as Error).message}`);
    }
    // Parsed alone for its errors' line numbers, spliced as text.
    parseGaneshaConf(body, path, include, depth + 1);
    parts.push(body.replace(/\n/g, ' '));
  }
  const tokens = tokenize(parts.join('\n'), file);
  let at = 0;
  const blockBody = (closing: boolean): GaneshaBlock[] & { params?: Map<string, string[]> } => {
    const blocks: GaneshaBlock[] = [];
    const params = new Map<string, string[]>();
    for (;;) {
      const tok = tokens[at];
      if (!tok) {
        if (closing) throw new GaneshaConfError(file, tokens[at - 1]?.line ?? 1, 'a block is not closed (missing "}")');
        break;
      }
      if (tok.t === '}') {
        if (!closing) throw new GaneshaConfError(file, tok.line, 'unexpected "}"');
        at++;
        break;
      }
      if (tok.t === ';') {
        at++;
        continue;
      }
      if (tok.t !== 'word') throw new GaneshaConfError(file, tok.line, `unexpected "${tok.v}": a block or parameter name was expected`);
      const next = tokens[at + 1];
      if (next?.t === '{') {
        at += 2;
        const inner = blockBody(true);
        blocks.push({ name: tok.v.toLowerCase(), params: inner.params!, blocks: [...inner] });
      } else if (next?.t === '=') {
        at += 2;
        const values: string[] = [];
        for (;;) {
          const v = tokens[at];
          if (!v || v.t === '}' ) {
            if (!closing) throw new GaneshaConfError(file, v?.line ?? tok.line, `${tok.v}: missing ";"`);
            break;
          }
          at++;
          if (v.t === ';') break;
          if (v.t === ',') continue;
          if (v.t !== 'word' && v.t !== 'string') throw new GaneshaConfError(file, v.line, `${tok.v}: unexpected "${v.v}" in its value`);
          values.push(v.v);
        }
        params.set(tok.v.toLowerCase(), values);
      } else throw new GaneshaConfError(file, tok.line, `"${tok.v}" is followed by neither "{" nor "="`);
    }
    return Object.assign(blocks, { params });
  };
  const top = blockBody(false);
  return [...top];
}

const param = (b: GaneshaBlock | undefined, key: string): string[] | undefined => b?.params.get(key);
const one = (b: GaneshaBlock | undefined, key: string): string | undefined => param(b, key)?.[0];

/** Ganesha's boolean spellings. */
const truthy = (v: string): boolean => /^(true|yes|on|1)$/i.test(v);

/** Does an Access_Type give access at all (RW, RO, MDONLY, MDONLY_RO)? `None` does not. */
const grants = (access: string | undefined): boolean => access !== undefined && !/^none$/i.test(access);

/** NFSv3 among Protocols (3, NFS3, NFSv3, V3). */
const hasV3 = (protocols: readonly string[]): boolean => protocols.some((p) => /^(nfs)?v?3$/i.test(p));

export interface GaneshaExports {
  entries: ExportEntry[];
  notes: string[];
}

/**
 * The exports table Ganesha's EXPORT blocks make (EXPORT_DEFAULTS filling what an export leaves
 * out). An export without NFSv3 in Protocols serves no NLM client and is left out. Clients: every
 * client when the export's Access_Type grants access, else the Clients of the CLIENT blocks that
 * do (names resolved through `resolved`; netgroups and wildcards noted and let through). Only
 * FSAL_VFS handles embed the kernel's: other FSALs keep their locks in memory (noted).
 */
export function ganeshaExports(blocks: readonly GaneshaBlock[], resolved: ReadonlyMap<string, readonly string[]> = new Map()): GaneshaExports {
  const notes: string[] = [];
  const entries: ExportEntry[] = [];
  const defaults = blocks.find((b) => b.name === 'export_defaults');
  const core = blocks.find((b) => b.name === 'nfs_core_param');
  const get = (e: GaneshaBlock, key: string) => param(e, key) ?? param(defaults, key);
  const seen = new Map<number, string>();
  const paths = new Map<string, number>();
  for (const e of blocks.filter((b) => b.name === 'export')) {
    const id = Number(one(e, 'export_id'));
    const path = one(e, 'path');
    if (!path || !Number.isInteger(id) || id < 0 || id > 0xffff) {
      notes.push(`an EXPORT block without a valid Export_Id (0–65535) and Path is left out (Export_Id ${one(e, 'export_id') ?? 'missing'}, Path ${path ?? 'missing'})`);
      continue;
    }
    if (!path.startsWith('/')) {
      notes.push(`export ${id}: Path ${path} is not absolute: left out`);
      continue;
    }
    const protocols = get(e, 'protocols') ?? param(core, 'protocols') ?? ['3', '4'];
    if (!hasV3(protocols)) {
      notes.push(`export ${id} (${path}): Protocols ${protocols.join(',')} has no NFSv3: no NLM client uses it`);
      continue;
    }
    if (seen.has(id) || paths.has(path)) {
      notes.push(`export ${id} (${path}): ${seen.has(id) ? `Export_Id already used by ${seen.get(id)}` : `Path already exported as ${paths.get(path)}`}: left out`);
      continue;
    }
    const clients = new Set<string>();
    let every = grants(get(e, 'access_type')?.[0]);
    for (const c of e.blocks.filter((b) => b.name === 'client')) {
      if (!grants(one(c, 'access_type') ?? get(e, 'access_type')?.[0])) continue;
      for (const name of param(c, 'clients') ?? []) {
        const spec = clientSpec(name);
        if (spec.kind === 'every') every = true;
        else if (spec.kind === 'networks') spec.networks.forEach((n) => clients.add(n));
        else if (spec.kind === 'name') {
          const as = resolved.get(spec.name) ?? [];
          if (as.length === 0) notes.push(`export ${id} (${path}): client ${spec.name} does not resolve: none of its requests is allowed`);
          as.forEach((a) => clients.add(a));
        } else {
          every = true;
          notes.push(`export ${id} (${path}): client ${spec.why} cannot be matched by address: every client may lock`);
        }
      }
    }
    const squash = (get(e, 'squash')?.[0] ?? 'root_squash').toLowerCase().replace(/_/g, '');
    const fsal = one(e.blocks.find((b) => b.name === 'fsal'), 'name')?.toUpperCase() ?? 'VFS';
    if (fsal !== 'VFS') notes.push(`export ${id} (${path}): FSAL_${fsal} handles name no kernel file: its locks are kept in lockdrop's memory only`);
    const num = (key: string) => {
      const v = get(e, key)?.[0];
      return v === undefined || !/^-?\d+$/.test(v) ? undefined : Number(v) >>> 0;
    };
    const entry: ExportEntry = {
      path,
      ganeshaExportId: id,
      clients: every ? [] : [...clients],
      secure: truthy(get(e, 'privilegedport')?.[0] ?? 'false'),
      fileLocks: fsal === 'VFS',
      // Ganesha's Squash: root_squash/root/rootsquash, all_squash/all/allsquash, no_root_squash/none/noidsquash, root_id_squash/rootid.
      rootSquash: !/^(norootsquash|none|noidsquash)$/.test(squash),
      allSquash: /^(allsquash|all|allanonymous)$/.test(squash),
    };
    const anonuid = num('anonymous_uid');
    const anongid = num('anonymous_gid');
    if (anonuid !== undefined) entry.anonuid = anonuid;
    if (anongid !== undefined) entry.anongid = anongid;
    if (!every && clients.size === 0) entry.clients = [NO_CLIENT];
    seen.set(id, path);
    paths.set(path, id);
    entries.push(entry);
  }
  return { entries, notes };
}
