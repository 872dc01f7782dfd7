// Reads an nfs-utils statd state directory (usually /var/lib/nfs) into one server address's
// records, so a cluster moving from kernel lockd brings its client lists along.
//
// nfs-utils (support/nsm/file.c) keeps `sm/<host>` for monitored hosts and `sm.bak/<host>` for
// hosts still to notify; each file holds lines of seven blank-separated fields:
//   <callback addr: s_addr as %08x> <prog %08x> <vers %08x> <proc %08x> <priv: 32 hex> <mon_name> <my_name>
// and `state` is the NSM state number as a binary native-endian int.
import { promises as fs } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { SM_PRIV_SIZE } from './protocol';
import { normaliseAddress } from '../net';
import { recordKey, type HostRecord, type SkippedFile } from './store';

/** NLM's program number: a monitor by the kernel's lockd becomes one by lockdrop's own NLM. */
const NLM_PROGRAM = 100021;

export interface NfsUtilsLine {
  callbackAddress: string;
  prog: number;
  vers: number;
  proc: number;
  priv: Buffer;
  monName: string;
  myName: string;
}

/**
 * One record line. The address field is a network-order s_addr printed as a host integer, so on
 * the little-endian machines nfs-utils runs on, 127.0.0.1 reads `0100007f`.
 */
export function parseNfsUtilsLine(line: string): NfsUtilsLine | undefined {
  const m = /^([0-9a-fA-F]{8}) ([0-9a-fA-F]{8}) ([0-9a-fA-F]{8}) ([0-9a-fA-F]{8}) ([0-9a-fA-F]{32}) (\S+) +(\S*)$/.exec(line);
  if (!m) return undefined;
  const s = parseInt(m[1]!, 16);
  const callbackAddress = [s & 0xff, (s >>> 8) & 0xff, (s >>> 16) & 0xff, s >>> 24].join('.');
  const priv = Buffer.from(m[5]!, 'hex');
  if (priv.length !== SM_PRIV_SIZE) return undefined;
  return { callbackAddress, prog: parseInt(m[2]!, 16), vers: parseInt(m[3]!, 16), proc: parseInt(m[4]!, 16), priv, monName: m[6]!, myName: m[7]! };
}

export interface NfsUtilsImport {
  /** The `state` file's number, undefined when missing or unreadable. */
  state: number | undefined;
  records: HostRecord[];
  skipped: SkippedFile[];
}

export interface NfsUtilsReadOptions {
  /** Finds a host's address when neither its file name nor its mon_name is an address. */
  resolve?: (hostname: string) => Promise<string | undefined>;
  now?: () => number;
}

export async function readNfsUtilsStateDir(dir: string, serverAddress: string, opts: NfsUtilsReadOptions = {}): Promise<NfsUtilsImport> {
  const skipped: SkippedFile[] = [];
  let state: number | undefined;
  const statePath = path.join(dir, 'state');
  try {
    const b = await fs.readFile(statePath);
    if (b.length === 4) state = b.readInt32LE(0);
    else skipped.push({ path: statePath, reason: `state file has ${b.length} bytes, expected 4` });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') skipped.push({ path: statePath, reason: (err as Error).message });
  }

  const byKey = new Map<string, HostRecord>();
  const since = (opts.now ?? Date.now)();
  for (const sub of ['sm', 'sm.bak']) {
    const d = path.join(dir, sub);
    let names: string[];
    try {
      names = await fs.readdir(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    for (const file of names.sort()) {
      if (file.startsWith('.')) continue;
      const p = path.join(d, file);
      let text: string;
      try {
        text = await fs.readFile(p, 'utf8');
      } catch (err) {
        skipped.push({ path: p, reason: (err as Error).message });
        continue;
      }
      const lines = text.split('\n').filter((l) => l.length > 0).map(parseNfsUtilsLine);
      if (lines.length === 0 || lines.some((l) => l === undefined)) {
        skipped.push({ path: p, reason: lines.length === 0 ? 'empty record' : 'unparsable record line' });
        continue;
      }
      for (const l of lines as NfsUtilsLine[]) {
        const literal = [file, l.monName].find((n) => isIP(n) !== 0);
        const address = literal ?? (await opts.resolve?.(file));
        if (!address) {
          skipped.push({ path: p, reason: `cannot find an address for ${file}` });
          continue;
        }
        const host = normaliseAddress(address);
        const key = recordKey(l.monName, host);
        let rec = byKey.get(key);
        if (!rec) byKey.set(key, rec = { monName: l.monName, address: host, serverAddress, local: false, callbacks: [], since });
        if (l.prog === NLM_PROGRAM) {
          rec.local = true;
        } else if (!rec.callbacks.some((c) => c.myName === l.myName && c.myProg === l.prog && c.myVers === l.vers && c.myProc === l.proc)) {
          rec.callbacks.push({ myName: l.myName, myProg: l.prog, myVers: l.vers, myProc: l.proc, priv: l.priv.toString('hex'), callbackAddress: l.callbackAddress });
        }
      }
    }
  }
  return { state, records: [...byKey.values()], skipped };
}
