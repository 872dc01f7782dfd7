// The effective exports table: the configuration's `exports` list and the one the NFS server
// itself keeps (knfsd's etab, Ganesha's EXPORT blocks), the configuration winning where both
// name a path. Pure.
import type { ExportEntry } from './table';

export type ExportOrigin = 'config' | 'knfsd' | 'ganesha';

export interface EffectiveExport {
  entry: ExportEntry;
  from: ExportOrigin;
  /** A followed entry of the same path the configuration's replaced. */
  overrides?: ExportOrigin;
}

export function mergeExports(configured: readonly ExportEntry[], followed: readonly ExportEntry[], from: ExportOrigin): EffectiveExport[] {
  const mine = new Set(configured.map((e) => e.path));
  const theirs = new Set(followed.map((e) => e.path));
  return [
    ...configured.map((entry): EffectiveExport => (theirs.has(entry.path) ? { entry, from: 'config', overrides: from } : { entry, from: 'config' })),
    ...followed.filter((e) => !mine.has(e.path)).map((entry): EffectiveExport => ({ entry, from })),
  ];
}
