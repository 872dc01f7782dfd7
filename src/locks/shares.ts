// Share reservations (NLM SHARE/UNSHARE, DOS-style deny modes): NLM's alone — Linux keeps them in
// lockd's memory too — but kept per file, host and address like the locks, so drops find them.
import type { Share } from './entries';
import type { GraceTable } from './grace';
import type { LockState } from './state';
import type { LockStatus, ShareRequest } from './types';

/**
 * NLM SHARE. A reservation conflicts with another owner's when one's access meets the other's
 * deny mode; the same (host, oh) replaces its own reservation. During a covering grace only
 * reclaims are taken; unlike LOCK, a reclaim after grace is accepted (Linux nlmsvc_proc_share).
 */
export function share(st: LockState, grace: GraceTable, req: ShareRequest, reclaim: boolean): LockStatus {
  let file = st.fileOf(req.fh);
  const fkey = st.fileKey(file, req.fh);
  // The handle must name a file.
  const refused = st.locker?.validate(fkey, req.fh);
  if (refused !== undefined) return refused;
  if (st.draining.size !== 0 && st.draining.has(req.serverAddress)) return 'denied_nolocks';
  const exportId = file !== 0 ? st.exportIdOf(file) : st.exportOf(req.fh);
  if (!reclaim && grace.covers(req.serverAddress, exportId)) return 'denied_grace_period';
  const oh = req.owner.oh.toString('latin1');
  let mine: Share | undefined;
  for (const s of (file !== 0 && st.extras.get(file)?.shares) || []) {
    if (s.host.key === req.owner.host && s.oh === oh) mine = s;
    else if ((req.access & s.mode) !== 0 || (req.mode & s.access) !== 0) return 'denied';
  }
  if (mine) st.removeShare(mine);
  if (file === 0) file = st.newFile(fkey, exportId, req.fh);
  const host = st.internHost(req.owner.host);
  const addr = st.internAddr(req.serverAddress);
  const s: Share = { file, host, oh, mode: req.mode, access: req.access, addr };
  st.more(file).shares.push(s);
  host.shares.add(s);
  addr.shares.add(s);
  st.hostRef(addr, host, 1);
  st.nShares++;
  return 'granted';
}

/** NLM UNSHARE: always 'granted' (Linux answers granted whether or not a reservation existed). */
export function unshare(st: LockState, req: ShareRequest): LockStatus {
  const file = st.fileOf(req.fh);
  const refused = st.locker?.validate(st.fileKey(file, req.fh), req.fh);
  if (refused !== undefined) return refused;
  const shares = file !== 0 ? st.extras.get(file)?.shares : undefined;
  if (!shares) return 'granted';
  const oh = req.owner.oh.toString('latin1');
  const s = shares.find((x) => x.host.key === req.owner.host && x.oh === oh);
  if (s) {
    st.removeShare(s);
    st.freeHostIfEmpty(s.host);
    st.freeFileIfEmpty(file);
  }
  return 'granted';
}
