import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ExportsTable, GaneshaConfError, NO_CLIENT, ganeshaExports, parseGaneshaConf } from '../../src/exports';

// Debian's nfs-ganesha 4.3 ships /etc/ganesha/vfs.conf, the smallest working export (read below
// when installed); this one adds what an HA setup writes: EXPORT_DEFAULTS, CLIENT blocks, a
// v4-only export, another FSAL, an %include.
const CONF = `
NFS_CORE_PARAM {
\t# Protocols = 3,4,9P;   a comment inside a block
\tProtocols = 3, 4;
}
EXPORT_DEFAULTS {
\tAccess_Type = None;     # nothing unless an export or client says so
\tSquash = root_squash;
\tAnonymous_Uid = 65534;
}
EXPORT
{
\tExport_Id = 1;
\tPath = "/srv/a";        # quoted
\tPseudo = /a;
\tProtocols = 3,4;
\tSquash = No_Root_Squash;
\tPrivilegedPort = true;
\tCLIENT {
\t\tClients = 10.0.0.0/24, 192.168.1.7;
\t\tAccess_Type = RW;
\t}
\tCLIENT { Clients = 10.9.9.9; Access_Type = None; }
\tFSAL { Name = VFS; }
}
EXPORT { Export_Id = 2; Path = /srv/v4only; Pseudo = /v4; Protocols = 4; Access_Type = RW; FSAL { Name = VFS; } }
export { export_id = 3; path = /srv/all; access_type = RO; squash = all_squash; anonymous_uid = 1000; anonymous_gid = -2; fsal { name = vfs; } }
EXPORT { Export_Id = 4; Path = /srv/ceph; Protocols = NFS3; Access_Type = RW; FSAL { Name = CEPH; } }
EXPORT { Export_Id = 5; Path = /srv/nobody; Protocols = v3; CLIENT { Clients = nowhere.invalid; Access_Type = RW; } }
%include "more.conf"
LOG { Default_Log_Level = EVENT; COMPONENTS { FSAL = INFO; } }
`;
const MORE = 'EXPORT { Export_Id = 6; Path = /srv/inc; Access_Type = MDONLY; CLIENT { Clients = @ng; Access_Type = RW; } }\n';

describe('exports: Ganesha configuration', () => {
  it("reads Debian's vfs.conf as Ganesha does", function () {
    let text: string;
    try {
      text = readFileSync('/etc/ganesha/vfs.conf', 'utf8');
    } catch {
      return this.skip(); // nfs-ganesha not installed (scripts/setup.sh installs it)
    }
    const { entries, notes } = ganeshaExports(parseGaneshaConf(text, 'vfs.conf'));
    assert.deepEqual(notes, []);
    assert.deepEqual(entries, [{ path: '/nonexistent', ganeshaExportId: 77, clients: [], secure: false, fileLocks: true, rootSquash: true, allSquash: false }]);
  });

  it('EXPORT blocks as NLM needs them: Export_Id, Path, v3 only, access, squash, FSAL', () => {
    const blocks = parseGaneshaConf(CONF, 'ganesha.conf', (p) => {
      assert.equal(p, 'more.conf');
      return MORE;
    });
    const { entries, notes } = ganeshaExports(blocks, new Map());
    const by = new Map(entries.map((e) => [e.ganeshaExportId, e]));
    assert.deepEqual([...by.keys()], [1, 3, 4, 5, 6]);
    assert.deepEqual(by.get(1), { path: '/srv/a', ganeshaExportId: 1, clients: ['10.0.0.0/24', '192.168.1.7'], secure: true, fileLocks: true, rootSquash: false, allSquash: false, anonuid: 65534 });
    assert.deepEqual(by.get(3), { path: '/srv/all', ganeshaExportId: 3, clients: [], secure: false, fileLocks: true, rootSquash: true, allSquash: true, anonuid: 1000, anongid: 0xfffffffe });
    assert.equal(by.get(4)!.fileLocks, false);
    assert.deepEqual(by.get(5)!.clients, [NO_CLIENT]);
    assert.deepEqual(by.get(6)!.clients, []); // MDONLY grants access to every client
    assert.ok(notes.some((n) => n.startsWith('export 2 (/srv/v4only): Protocols 4 has no NFSv3')));
    assert.ok(notes.some((n) => n.includes('FSAL_CEPH')));
    assert.ok(notes.some((n) => n.includes('nowhere.invalid does not resolve')));
    // A table made of them finds each export by the Export_Id in Ganesha's handles.
    const table = new ExportsTable(entries);
    assert.equal(table.exportOf(Buffer.from([0x43, 0, 0, 3, 0])), '/srv/all');
  });

  it('an Export_Id or Path given twice keeps the first', () => {
    const { entries, notes } = ganeshaExports(parseGaneshaConf('EXPORT { Export_Id = 1; Path = /a; Access_Type = RW; } EXPORT { Export_Id = 1; Path = /b; } EXPORT { Export_Id = 2; Path = /a; }'));
    assert.deepEqual(entries.map((e) => e.path), ['/a']);
    assert.equal(notes.length, 2);
  });

  it('syntax errors name the file and line', () => {
    const bad = (text: string, line: number, re: RegExp) =>
      assert.throws(() => parseGaneshaConf(text, 'g.conf'), (e: unknown) => e instanceof GaneshaConfError && e.line === line && re.test(e.message));
    bad('EXPORT {\n Export_Id = 1;\n', 2, /not closed/);
    bad('EXPORT {\n Path = "/x;\n}', 2, /unterminated/);
    bad('}\n', 1, /unexpected "}"/);
    bad('EXPORT\n{\n Path /x;\n}', 3, /neither "\{" nor "="/);
    bad('%include "x.conf"\n', 1, /not read here/);
    assert.throws(() => parseGaneshaConf('%include "self"\n', 'self', () => '%include "self"\n'), /nested more than 10 deep/);
  });
});
