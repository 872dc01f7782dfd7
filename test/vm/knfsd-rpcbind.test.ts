// lockdropd beside the kernel's own NFS server, in a guest of Debian's kernel (nfsd and its lockd
// are modules of it) with Debian's userland from the host's tree: with `rpcbind: takeover` NLM is
// lockdrop's after nfsd starts, stops and starts again — lockdropd reacts to rpc.nfsd's write to
// /proc/fs/nfsd/threads instead of finding out at its next periodic check — and `exportsFrom:
// knfsd` serves what exportfs wrote. The guest runs guest/knfsd-boot.sh and reports on its console.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { hasCommand } from '../support/netns';
import { REPO, buildInitramfs, findKernel } from './vm';

const MODULES = ['virtio_pci', 'virtio_console', '9pnet_virtio', '9p', 'overlay', 'nfsd'];

describe('vm: lockdropd beside knfsd (the kernel NFS server and its lockd)', function () {
  this.timeout(400_000);
  const lines = new Map<string, string>();
  /** lockdropd's rpcbind log lines in the guest. */
  const logs: { time: number; msg: string }[] = [];
  let dir: string | undefined;

  before(async function () {
    // Two to three minutes of an emulated guest: run by `npm run test:vm`, not in the whole suite.
    if (!process.env.LOCKDROP_VM_KNFSD) return this.skip();
    const kernel = findKernel();
    if (typeof kernel === 'string') return this.skip();
    const missing = ['qemu-system-x86_64', 'rpc.nfsd', 'exportfs', 'rpcbind', 'rpcinfo'].filter((c) => !hasCommand(c));
    if (missing.length) throw new Error(`missing: ${missing.join(', ')} (bash scripts/setup.sh installs them as root)`);
    dir = mkdtempSync(path.join(tmpdir(), 'lockdrop-knfsd-vm-'));
    const initrd = path.join(dir, 'initrd');
    buildInitramfs(kernel, initrd, MODULES);
    const append = ['console=ttyS0', 'loglevel=4', 'panic=-1', `lockdrop.boot=${path.join(__dirname, 'guest', 'knfsd-boot.sh')}`, `lockdrop.repo=${REPO}`].join(' ');
    // TCG: KVM hangs this nested host's guests (DESIGN.md); no network, loopback is enough here.
    const qemu = spawn('qemu-system-x86_64', [
      '-accel', 'tcg', '-m', '1024', '-smp', '1', '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
      '-chardev', 'stdio,id=con,signal=off', '-serial', 'chardev:con', '-kernel', kernel.vmlinuz, '-initrd', initrd, '-append', append,
      '-fsdev', 'local,id=root,path=/,security_model=none,readonly=on,multidevs=remap', '-device', 'virtio-9p-pci,fsdev=root,mount_tag=hostroot',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    const console: string[] = [];
    createInterface({ input: qemu.stdout! }).on('line', (l) => {
      console.push(l);
      if (process.env.LOCKDROP_VM_VERBOSE && /lockdrop-knfsd/.test(l)) process.stdout.write(`      ${l}\n`);
      const m = /lockdrop-knfsd: (\S+) ?(.*)$/.exec(l);
      if (m) lines.set(m[1]!, m[2]!);
      const log = /lockdrop-knfsd-log: (\{.*\})$/.exec(l);
      if (log) {
        const j = JSON.parse(log[1]!) as { time: string; msg: string };
        logs.push({ time: Date.parse(j.time), msg: j.msg });
      }
    });
    const timer = setTimeout(() => qemu.kill('SIGKILL'), 380_000);
    await new Promise((r) => qemu.once('exit', r));
    clearTimeout(timer);
    if (lines.has('FAILED') || !lines.has('done')) throw new Error(`the guest did not finish: ${console.filter((l) => /lockdrop-(knfsd|vm)/.test(l)).slice(-6).join(' | ')}`);
  });
  after(() => dir && rmSync(dir, { recursive: true, force: true }));

  const scene = (name: string): { nlm: string; after: number } => JSON.parse(lines.get(name)!) as { nlm: string; after: number };

  it("serves the export exportfs wrote, named as knfsd's handles name it", () => {
    const exports = JSON.parse(lines.get('exports')!) as { path: string; from: string; fsid: number; secure: boolean };
    assert.deepEqual([exports.path, exports.from, exports.fsid, exports.secure], ['/srv/export', 'knfsd', 1, false]);
  });

  it("NLM is lockdrop's at once after nfsd starts, stops and starts again (the kernel's lockd registers at each start)", () => {
    let since = 0;
    for (const s of ['nfsd-start', 'nfsd-stop', 'nfsd-restart']) {
      const r = scene(s);
      assert.equal(r.nlm, '4045 ', `${s}: NLM registered on ${r.nlm}`);
      // rpc.nfsd's exit against lockdropd's registration (guest clock both): negative when lockdropd
      // registered before rpc.nfsd even exited (it reacts to the write to threads).
      const returned = Number(lines.get(`${s}-returned`)) * 1000;
      const taken = logs.find((l) => l.time > since && /registered again/.test(l.msg));
      assert.ok(taken, `${s}: lockdropd registered again`);
      const ms = taken.time - returned;
      console.log(`      ${s}: NLM lockdrop's again ${ms} ms after rpc.nfsd exited (TCG guest; its own poll saw it ${r.after.toFixed(2)} s after)`);
      assert.ok(ms < 2_000, `${s}: registered again ${ms} ms after rpc.nfsd`);
      since = taken.time;
    }
  });
});
