// Exports on real filesystems for the files tests: a tmpfs and an ext4 image mounted in the test's
// private mount namespace, knfsd-style NFS handles made from name_to_handle_at, and an NLM
// server whose lock table locks on those files.
import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nameToHandle } from '../../src/addon/files';
import { ExportsTable, type ExportEntry } from '../../src/exports';
import { ExportedFiles } from '../../src/files';
import { nativeFileSyscalls } from '../../src/files/native';
import { sh } from '../support/netns';
import type { NlmServiceOptions } from '../../src/nlm';
import { startServer, type TestServer } from '../nlm/harness';

export interface Mounted {
  dir: string;
  dispose(): void;
}

export function mountTmpfs(): Mounted {
  const dir = mkdtempSync(join(tmpdir(), 'ld-tmpfs-'));
  sh('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'ld-files', dir]);
  return { dir, dispose: () => unmount(dir) };
}

/** An ext4 filesystem on a loop device (mkfs.ext4 on an image file), mounted read-write or read-only. */
export function mountExt4(o: { readOnly?: boolean } = {}): Mounted {
  const work = mkdtempSync(join(tmpdir(), 'ld-ext4-'));
  const image = join(work, 'fs.img');
  const dir = join(work, 'mnt');
  sh('truncate', ['-s', '32M', image]);
  sh('mkfs.ext4', ['-q', '-F', image]);
  sh('mkdir', [dir]);
  sh('mount', ['-o', `loop${o.readOnly ? ',ro' : ''}`, image, dir]);
  return {
    dir,
    dispose: () => {
      unmount(dir);
      rmSync(work, { recursive: true, force: true });
    },
  };
}

function unmount(dir: string): void {
  sh('umount', [dir], { allowFail: true });
  rmSync(dir, { recursive: true, force: true });
}

/** A knfsd NFS handle (fh_version 1, FSID_NUM) of a file: header, fsid, then the kernel's file_handle. */
export function knfsdHandle(path: string, fsid: number): Buffer {
  const k = nameToHandle(path);
  const fsidBytes = Buffer.alloc(4);
  fsidBytes.writeUInt32LE(fsid);
  return Buffer.concat([Buffer.from([1, 0, 1, k.type]), fsidBytes, k.handle]);
}

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
