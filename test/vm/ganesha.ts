// NFS-Ganesha on a lab host: NFSv3 and MOUNT only (Enable_NLM = false: lockdropd serves NLM and
// statd beside it), one FSAL_VFS export. Two nodes given the same Export_Id and path hand out the
// same file handles, so a client's handles stay good when its server address moves.
// (test/support/ganesha.ts, being written on another branch, is meant to replace this.)
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Lab, LabHost } from '../../src/demo/lab';

export interface GaneshaExport { id: number; path: string }

export async function startGanesha(lab: Lab, host: LabHost, dir: string, exp: GaneshaExport): Promise<ChildProcess> {
  mkdirSync(path.join(dir, 'recovery'), { recursive: true });
  const conf = path.join(dir, 'ganesha.conf');
  const log = path.join(dir, 'ganesha.log');
  writeFileSync(conf, `
NFS_CORE_PARAM {
  Protocols = 3;
  Enable_NLM = false;
  Enable_RQUOTA = false;
  NFS_Port = 2049;
  MNT_Port = 20048;
}
NFS_KRB5 { Active_krb5 = false; }
NFSV4 { RecoveryRoot = ${path.join(dir, 'recovery')}; Graceless = true; }
EXPORT {
  Export_Id = ${exp.id};
  Path = ${exp.path};
  Pseudo = /export;
  Protocols = 3;
  Transports = TCP, UDP;
  Access_Type = RW;
  Squash = No_Root_Squash;
  SecType = sys;
  FSAL { Name = VFS; }
}
LOG { Default_Log_Level = EVENT; }
`);
  const child = lab.spawn(host, 'ganesha.nfsd', ['-F', '-L', log, '-f', conf, '-p', path.join(dir, 'ganesha.pid')]);
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) break;
    let registered = '';
    try { registered = lab.exec(host, 'rpcinfo', ['-p', '127.0.0.1']); } catch { /* not yet */ }
    if (/100003\s+3\s+tcp\s+2049/.test(registered) && /100005\s+3\s+tcp/.test(registered)) return child;
    await new Promise((r) => setTimeout(r, 100));
  }
  let tail = '';
  try { tail = readFileSync(log, 'utf8').split('\n').slice(-5).join(' | '); } catch { /* no log */ }
  throw new Error(`NFS-Ganesha on ${host.name} did not register NFSv3 and MOUNT with its rpcbind: ${tail}`);
}
