// The addon's side of systemd's file descriptor store (native/src/fdstore.cc): a descriptor sent
// with sd_notify arrives as the same open file description; bad addresses and too many
// descriptors are errno errors, never a crash; an empty socket answers null.
import assert from 'node:assert/strict';
import { closeSync, fstatSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addonStatus, bindNotifySocket, memfdCreate, receiveNotify, sdNotifyWithFds, setCloexec } from '../../src/addon';

describe('addon: descriptors through sd_notify (FDSTORE=1)', function () {
  let dir: string;
  before(function () {
    if (!addonStatus().available) this.skip();
    dir = mkdtempSync(join(tmpdir(), 'lockdrop-fdstore-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('sends a descriptor that arrives as the same file, with the message and the sender pid', () => {
    const path = join(dir, 'notify.sock');
    const sock = bindNotifySocket(path);
    try {
      assert.equal(receiveNotify(sock), null, 'nothing queued');
      const file = join(dir, 'held');
      writeFileSync(file, 'x');
      const fd = openSync(file, 'r');
      sdNotifyWithFds(path, 'FDSTORE=1\nFDNAME=lockdrop-d0', [fd]);
      const m = receiveNotify(sock)!;
      assert.equal(m.message, 'FDSTORE=1\nFDNAME=lockdrop-d0');
      assert.equal(m.pid, process.pid);
      assert.equal(m.fds.length, 1);
      assert.notEqual(m.fds[0], fd, 'a new descriptor');
      assert.equal(fstatSync(m.fds[0]!).ino, fstatSync(fd).ino);
      setCloexec(m.fds[0]!, false);
      setCloexec(m.fds[0]!, true);
      closeSync(m.fds[0]!);
      closeSync(fd);
    } finally {
      closeSync(sock);
    }
  });

  it('a memfd reaches the receiver with its content', () => {
    const path = join(dir, 'notify2.sock');
    const sock = bindNotifySocket(path);
    try {
      const mem = memfdCreate('snapshot');
      writeFileSync(mem, 'snapshot bytes');
      sdNotifyWithFds(path, 'FDSTORE=1\nFDNAME=lockdrop-snapshot', [mem]);
      closeSync(mem);
      const m = receiveNotify(sock)!;
      const b = Buffer.alloc(14);
      readSync(m.fds[0]!, b, 0, 14, 0);
      assert.equal(b.toString(), 'snapshot bytes');
      closeSync(m.fds[0]!);
    } finally {
      closeSync(sock);
    }
  });

  it('errno errors for a bad address, a missing socket, too many descriptors and a closed one', () => {
    assert.throws(() => sdNotifyWithFds('relative.sock', 'x', []), /EAFNOSUPPORT/);
    assert.throws(() => sdNotifyWithFds(join(dir, 'nobody.sock'), 'x', []), /ENOENT/);
    assert.throws(() => sdNotifyWithFds(`@lockdrop-nobody-${process.pid}`, 'x', []), /ECONNREFUSED/);
    assert.throws(() => sdNotifyWithFds(join(dir, 'nobody.sock'), 'x', Array.from({ length: 254 }, () => 0)), /EINVAL/);
    const path = join(dir, 'notify3.sock');
    const sock = bindNotifySocket(path);
    try {
      assert.throws(() => sdNotifyWithFds(path, 'x', [987_654]), /EBADF/);
      assert.throws(() => bindNotifySocket(path), /EADDRINUSE/);
      assert.throws(() => setCloexec(987_654, true), /EBADF/);
    } finally {
      closeSync(sock);
    }
  });
});
