// The invariant check of the table's state: every count and index rebuilt from the per-file
// lock lists and compared, so that the model test and the benchmarks guard every part at once.
import type { AddressEntry } from './entries';
import { isExcl } from './state';
import type { LockState } from './state';

/**
 * Rebuilds every count and index of the table from its per-file lists and compares: the
 * inconsistencies found (empty when the indexes are in step). For tests and benchmarks, through
 * checkIndexes (src/locks/testing.ts): not part of the table's surface.
 */
export function checkState(s: LockState): string[] {
  const { L, F, O, H } = s;
  const errs: string[] = [];
  const perHolder = new Map<number, Set<number>>();
  const perAddr = new Map<number, number>();
  // address id -> host id -> holders + shares + blocks found by the rescan
  const refs = new Map<number, Map<number, number>>();
  const ref = (a: AddressEntry, host: number): void => {
    const m = refs.get(a.id) ?? new Map<number, number>();
    m.set(host, (m.get(host) ?? 0) + 1);
    refs.set(a.id, m);
  };
  let locks = 0;
  let blocked = 0;
  let shares = 0;
  let files = 0;
  const perExport = new Map<number, number>();
  for (const f of F.ids()) {
    files++;
    if (F.findKey(F.key[f]) !== f) errs.push('file not indexed by its key');
    let n = 0;
    let x = 0;
    for (let l = F.head[f]; l !== 0; l = L.fNext[l]) {
      n++;
      if (isExcl(L, l)) x++;
      if (L.file[l] !== f) errs.push('lock on wrong file list');
      if (L.fNext[l] !== 0 && L.fPrev[L.fNext[l]] !== l) errs.push('broken file links');
      if (!(L.start(l) <= L.end(l))) errs.push('lock ends before it starts');
      const hd = L.holder[l];
      perHolder.set(hd, (perHolder.get(hd) ?? new Set()).add(l));
      perAddr.set(H.addr[hd], (perAddr.get(H.addr[hd]) ?? 0) + 1);
    }
    locks += n;
    if (x !== F.exclusive[f]) errs.push(`file exclusive count ${F.exclusive[f]}, rescan ${x}`);
    const extra = s.extras.get(f);
    for (const b of extra?.queue.toArray() ?? []) {
      blocked++;
      ref(b.addr, O.host[b.owner]);
      if (b.file !== f || !b.addr.blocks.has(b) || !s.ownerBlocks.get(b.owner)?.includes(b) || !s.hostIds.get(O.host[b.owner]).blocks.has(b)) {
        errs.push('block missing from an index');
      }
    }
    for (const sh of extra?.shares ?? []) {
      shares++;
      ref(sh.addr, sh.host.id);
      if (sh.file !== f || !sh.addr.shares.has(sh) || !sh.host.shares.has(sh)) errs.push('share missing from an index');
    }
    if (n === 0 && !extra?.queue.size && !extra?.shares.length) errs.push('empty file kept');
    if (F.exp[f] !== 0) perExport.set(F.exp[f], (perExport.get(F.exp[f]) ?? 0) + 1);
    if (F.mark[f] !== 0) errs.push('file left marked');
  }
  for (const [f] of s.extras) if (!F.live(f)) errs.push('extra kept for a freed file');
  if (files !== F.size) errs.push(`files ${F.size} live, ${files} rescanned`);
  if (locks !== s.nLocks || locks !== L.size) errs.push(`nLocks ${s.nLocks} (records ${L.size}) != ${locks}`);
  if (blocked !== s.nBlocked) errs.push(`nBlocked ${s.nBlocked} != ${blocked}`);
  if (shares !== s.nShares) errs.push(`nShares ${s.nShares} != ${shares}`);
  const ownersPerHost = new Map<number, number>();
  const holderIds = new Set(H.ids());
  for (const o of O.ids()) {
    if (O.findKey(O.host[o], O.svid[o], O.oh[o]) !== o) errs.push('owner not indexed');
    const host = s.hostIds.find(O.host[o]);
    if (!host || s.hosts.get(host.key) !== host) errs.push('owner under an unindexed host');
    ownersPerHost.set(O.host[o], (ownersPerHost.get(O.host[o]) ?? 0) + 1);
    if (O.holder[o] === 0 && !s.ownerBlocks.get(o)?.length) errs.push('empty owner kept');
    if (O.mark[o] !== 0) errs.push('owner left marked');
    const seen = new Set<number>();
    for (let hd = O.holder[o]; hd !== 0; hd = H.next[hd]) {
      if (!holderIds.delete(hd)) errs.push('owner chains a freed or shared holder');
      if (seen.has(H.addr[hd])) errs.push('two holders for one address');
      seen.add(H.addr[hd]);
      if (H.owner[hd] !== o) errs.push('holder under the wrong owner');
      const want = perHolder.get(hd) ?? new Set();
      let n = 0;
      for (let l = H.head[hd]; l !== 0; l = L.hNext[l]) {
        n++;
        if (!want.has(l)) errs.push('holder lists a lock not in the table');
        if (L.hNext[l] !== 0 && L.hPrev[L.hNext[l]] !== l) errs.push('broken holder links');
      }
      if (n !== want.size || n === 0) errs.push(`holder list ${n}, rescan ${want.size}`);
      ref(s.addrIds.get(H.addr[hd]), O.host[o]);
    }
  }
  for (const [o, log] of s.grants) if (!O.live(o) || log.length === 0) errs.push('grant log kept for a freed owner');
  if (holderIds.size !== 0) errs.push(`${holderIds.size} holders on no owner`);
  for (const [hd] of perHolder) if (O.holder[H.owner[hd]] === 0) errs.push('lock under an unindexed holder');
  for (const a of s.addrs.values()) {
    if (s.addrIds.find(a.id) !== a) errs.push(`address ${a.address} not registered`);
    if ((perAddr.get(a.id) ?? 0) !== a.count) errs.push(`address ${a.address} count ${a.count}, rescan ${perAddr.get(a.id) ?? 0}`);
    const want = refs.get(a.id) ?? new Map<number, number>();
    for (const [hid, at] of a.hosts) {
      if (at.host.id !== hid || s.hosts.get(at.host.key) !== at.host) errs.push(`address ${a.address} lists an unindexed host`);
      let prev = 0;
      for (let hd = at.head; hd !== 0; hd = H.aNext[hd]) {
        if (H.aPrev[hd] !== prev) errs.push(`address ${a.address} broken holder links`);
        if (H.addr[hd] !== a.id || O.host[H.owner[hd]] !== hid) errs.push(`address ${a.address} lists a stale holder`);
        prev = hd;
      }
      if ((want.get(hid) ?? 0) !== at.refs) errs.push(`address ${a.address} host refs ${at.refs}, rescan ${want.get(hid) ?? 0}`);
    }
    for (const [hid] of want) if (!a.hosts.has(hid)) errs.push(`address ${a.address} misses a host`);
  }
  for (const [aid] of perAddr) {
    const a = s.addrIds.find(aid);
    if (!a || s.addrs.get(a.address) !== a) errs.push('lock through an unindexed address');
  }
  for (const h of s.hosts.values()) {
    if (s.hostIds.find(h.id) !== h) errs.push(`host ${h.key} not registered`);
    if ((ownersPerHost.get(h.id) ?? 0) !== h.owners) errs.push(`host ${h.key} counts ${h.owners} owners, rescan ${ownersPerHost.get(h.id) ?? 0}`);
    if (h.owners === 0 && h.shares.size === 0) errs.push(`empty host ${h.key} kept`);
    if (h.marked) errs.push(`host ${h.key} left marked`);
  }
  for (const e of s.exports.values()) {
    let n = 0;
    for (let f = e.head, prev = 0; f !== 0; prev = f, f = F.xNext[f]) {
      n++;
      if (F.exp[f] !== e.id || F.xPrev[f] !== prev) errs.push(`export ${e.key} lists a file that is not its own`);
    }
    if (n !== e.files || n !== (perExport.get(e.id) ?? 0)) errs.push(`export ${e.key} lists ${n} files, counts ${e.files}, rescan ${perExport.get(e.id) ?? 0}`);
    if (n === 0) errs.push(`empty export ${e.key} kept`);
  }
  // Files by identity: each a live file, indexed both ways.
  if (s.byIdentity.size !== s.identityOf.size) errs.push('identity indexes differ in size');
  for (const [id, f] of s.byIdentity) if (!F.live(f) || s.identityOf.get(f) !== id) errs.push('file identity not indexed both ways');
  return errs;
}
