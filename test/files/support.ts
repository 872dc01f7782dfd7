// Exports on real filesystems for the files tests (mounted by test/support/files.ts), knfsd-style
// NFS handles made from name_to_handle_at, and an NLM server whose lock table locks on those files.
import { readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nameToHandle } from '../../src/addon/files';
import { ExportsTable, knfsdHandle as encodeKnfsdHandle, type ExportEntry } from '../../src/exports';
import { ExportedFiles } from '../../src/files';
import { nativeFileSyscalls } from '../../src/files/native';
export { mountExt4, mountTmpfs, type Mounted } from '../support/files';
import type { NlmServiceOptions } from '../../src/nlm';
import { startServer, type TestServer } from '../nlm/harness';

/** A knfsd NFS handle (fh_version 1, FSID_NUM) of a file: header, fsid, then the kernel's file_handle. */
export const knfsdHandle = (path: string, fsid: number): Buffer => encodeKnfsdHandle(fsid, nameToHandle(path));

export function makeFile(dir: string, name: string, bytes = 4096): string {
  const p = join(dir, name);
  writeFileSync(p, Buffer.alloc(bytes));
  return p;
}

/**
 * Open descriptors of files and directories in this process (for leak checks): sockets, pipes and
 * anonymous inodes are left out, as the RPC clients and libuv open and close their own.
 */
export function openFdCount(): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith('/')) n++;
    } catch {
      // the directory's own descriptor, closed by now
    }
  }
  return n;
}

export interface FileServer extends TestServer {
  files: ExportedFiles;
  exports: ExportsTable;
}

/** An NLM server (test/nlm/harness) whose table locks on the exports' real files. */
export async function startFileServer(addresses: string[], exportList: (Partial<ExportEntry> & { path: string; fsid: number })[], o: { maxOpen?: number; options?: Partial<NlmServiceOptions> } = {}): Promise<FileServer> {
  const entries: ExportEntry[] = exportList.map((e) => ({ clients: [], secure: false, fileLocks: true, ...e }));
  const exports = new ExportsTable(entries);
  const files = new ExportedFiles({ sys: nativeFileSyscalls, kernelHandle: (fh) => exports.kernelHandle(fh), maxOpen: o.maxOpen ?? 10_000 });
  files.setExports(entries.map((e) => ({ path: e.path, fileLocks: e.fileLocks !== false })));
  const server = await startServer(addresses, { files: { locker: files, exportOf: (fh) => exports.exportOf(fh) }, options: o.options });
  return {
    ...server,
    files,
    exports,
    close: async () => {
      await server.close();
      files.setExports([]);
    },
  };
}
