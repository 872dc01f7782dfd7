import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError, changedKeys, loadConfig, validateConfig } from '../../src/daemon/config';

const file = (text: string): string => {
  const p = path.join(mkdtempSync(path.join(tmpdir(), 'lockdrop-config-')), 'c.yaml');
  writeFileSync(p, text);
  return p;
};
const problems = (f: () => unknown): string[] => {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.problems.length ? e.problems : [e.message];
  }
  assert.fail('no error');
};

describe('daemon: configuration', () => {
  it('runs on embedded defaults with no file', () => {
    const c = loadConfig(undefined, {});
    assert.equal(c.stateDir, '/var/lib/lockdrop');
    assert.equal(c.control, '/run/lockdrop/control.sock');
    assert.equal(c.grace, 90);
    assert.equal(c.holdDown, 0);
    assert.deepEqual(c.sources, ['netlink', 'bpf', 'poll']);
    assert.equal(c.rpcbind, 'auto');
    assert.equal(c.nlmPort, 0);
    assert.equal(c.metrics, null);
    assert.deepEqual(c.exports, []);
    assert.deepEqual(c.notify, { timeout: 900, concurrency: 256 });
    assert.deepEqual(c.connections, { max: 1024, perPeer: 64 });
  });

  it('reads YAML and JSON; flags override the file', () => {
    const y = file('grace: 50\nnlmPort: 4045\nexports:\n  - path: /srv\n    fsid: 1\n    clients: [10.0.0.0/8]\n');
    const c = loadConfig(y, { grace: 20 });
    assert.equal(c.grace, 20);
    assert.equal(c.nlmPort, 4045);
    assert.deepEqual(c.exports, [{ path: '/srv', fsid: 1, clients: ['10.0.0.0/8'], secure: true, fileLocks: true }], 'locked on the real files unless fileLocks: false');
    assert.equal(loadConfig(file('{"holdDown": 300, "monNames": {"10.0.0.5": "nfs-a"}}'), {}).monNames['10.0.0.5'], 'nfs-a');
    assert.equal(loadConfig(file(''), {}).grace, 90, 'an empty file is all defaults');
  });

  it('names the bad key and says why', () => {
    assert.deepEqual(problems(() => validateConfig({ grace: 'soon' }, 't')), ['grace: Expected number, received string']);
    assert.deepEqual(problems(() => validateConfig({ nlmPort: 70000 }, 't')), ['nlmPort: Number must be less than or equal to 65535']);
    assert.deepEqual(problems(() => validateConfig({ sources: ['netlink', 'carrier-pigeon'] }, 't')).length, 1);
    assert.match(problems(() => validateConfig({ sources: ['carrier-pigeon'] }, 't'))[0]!, /^sources\.0: /);
    assert.deepEqual(problems(() => validateConfig({ colour: 'blue' }, 't')), ['colour: unknown key']);
    assert.deepEqual(problems(() => validateConfig({ notify: { retries: 3 } }, 't')), ['notify.retries: unknown key']);
    assert.deepEqual(problems(() => validateConfig({ addresses: ['10.0.0.300'] }, 't')), ['addresses.0: "10.0.0.300" is not an address or CIDR network']);
    assert.deepEqual(problems(() => validateConfig({ monNames: { nowhere: 'x' } }, 't')), ['monNames.nowhere: "nowhere" is not an IP address']);
    assert.deepEqual(problems(() => validateConfig({ metrics: '9464' }, 't')), ['metrics: must be "host:port" (IPv6 as "[addr]:port")']);
    assert.deepEqual(
      problems(() => validateConfig({ exports: [{ path: 'srv', uuid: 'xyz', dev: '8', fhPrefix: ['abc'] }, { path: '/a' }, { path: '/a' }] }, 't')),
      ['exports.0.path: must be an absolute path', 'exports.0.uuid: must be 32 hex digits (dashes or colons allowed)', 'exports.0.dev: must be "major:minor"', 'exports.0.fhPrefix.0: must be hex bytes', 'exports.2.path: duplicates exports.1.path'],
    );
    assert.deepEqual(problems(() => validateConfig({ exports: [{ path: '/a', ganeshaExportId: 7 }, { path: '/b', ganeshaExportId: 7 }] }, 't')), ['exports.1.ganeshaExportId: duplicates exports.0.ganeshaExportId']);
    assert.deepEqual(problems(() => validateConfig({ exports: [{ path: '/c', ganeshaExportId: 65536 }] }, 't')), ['exports.0.ganeshaExportId: Number must be less than or equal to 65535']);
  });

  it('exportsFrom: the server alone or with its file and poll; anything else named', () => {
    assert.equal(loadConfig(undefined, {}).exportsFrom, null);
    assert.deepEqual(validateConfig({ exportsFrom: 'knfsd' }, 't').exportsFrom, { server: 'knfsd', pollSeconds: 5 });
    assert.deepEqual(validateConfig({ exportsFrom: { server: 'ganesha', file: '/etc/ganesha/g.conf', pollSeconds: 1 } }, 't').exportsFrom, { server: 'ganesha', file: '/etc/ganesha/g.conf', pollSeconds: 1 });
    assert.match(problems(() => validateConfig({ exportsFrom: 'nfsd' }, 't'))[0]!, /^exportsFrom\.server: Invalid enum value/);
    assert.deepEqual(problems(() => validateConfig({ exportsFrom: { server: 'knfsd', file: 'etab' } }, 't')), ['exportsFrom.file: must be an absolute path']);
    assert.deepEqual(problems(() => validateConfig({ exportsFrom: { server: 'knfsd', every: 3 } }, 't')), ['exportsFrom.every: unknown key']);
  });

  it('reports unreadable and unparsable files', () => {
    assert.match(problems(() => loadConfig('/nonexistent/lockdrop.yaml', {}))[0]!, /cannot read config file \/nonexistent\/lockdrop.yaml/);
    assert.equal(problems(() => loadConfig(file('grace: [1,'), {})).length, 1);
    assert.match(problems(() => loadConfig(file('- a\n- b\n'), {}))[0]!, /must hold a mapping/);
  });

  it('accepts the example in contrib/lockdrop.yaml', () => {
    const c = loadConfig(path.join(__dirname, '..', '..', 'contrib', 'lockdrop.yaml'), {});
    assert.equal(c.exports.length, 5);
    assert.equal(c.exports.find((e) => e.path === '/export/ganesha')?.ganeshaExportId, 77);
    assert.equal(c.monNames['192.0.2.10'], 'nfs-a.example.com');
  });

  it('tells which keys changed', () => {
    const a = validateConfig({}, 't');
    const b = validateConfig({ logLevel: 'debug', exports: [{ path: '/x', fsid: 2 }] }, 't');
    assert.deepEqual(changedKeys(a, b).sort(), ['exports', 'logLevel']);
  });
});
