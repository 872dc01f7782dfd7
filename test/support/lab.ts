// Ending a test's demo lab (src/demo/lab.ts): every process and namespace gone, its folder removed,
// and nothing of it left over.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import type { Lab } from '../../src/demo/lab';

export async function endLab(s: { lab: Lab; dir: string } | undefined): Promise<void> {
  if (!s) return;
  await s.lab.dispose();
  rmSync(s.dir, { recursive: true, force: true });
  assert.deepEqual(s.lab.leftovers(), []);
}
