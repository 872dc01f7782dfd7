// Preload (node -r) for a benchmark started through tsx: every module of src/ comes from dist/
// instead (tsc's output, `npm run build`), as lockdropd runs it. tsx's own output pays for a
// getter on every use of another module's export and a __name call for every closure made
// (esbuild's keepNames): some 10 % of a call's CPU in the NLM path. A source newer than its build
// is an error, not a silent stale measurement.
const Module = require('node:module');
const { existsSync, statSync } = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const src = path.join(root, 'src') + path.sep;
const dist = path.join(root, 'dist') + path.sep;
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, parent, ...rest) {
  const file = resolve.call(this, request, parent, ...rest);
  if (!file.startsWith(src) || !file.endsWith('.ts')) return file;
  const built = dist + file.slice(src.length, -3) + '.js';
  if (!existsSync(built) || statSync(built).mtimeMs < statSync(file).mtimeMs) throw new Error(`${built} is missing or older than ${file}: npm run build`);
  return built;
};
