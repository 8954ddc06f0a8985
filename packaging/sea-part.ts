// Code that only some processes need is kept apart inside the single executable, as a
// brotli-compressed asset, and compiled only when first used: every other process neither
// holds its source in memory nor parses it. It runs as the bundle does: CommonJS, with
// Node's built-in modules for require. Only ever runs inside the bundle (see bundle.ts).

import { getAsset } from 'node:sea'
import { compileFunction } from 'node:vm'
import { brotliDecompressSync } from 'node:zlib'

/** The exports of the part `name` (the asset `name`.cjs.br). */
export function loadPart(name: string): unknown {
  const source = brotliDecompressSync(getAsset(partAsset(name))).toString('utf8')
  const module = { exports: {} }
  const run = compileFunction(source, ['exports', 'require', 'module', '__filename', '__dirname'], { filename: `${__filename}#${name}` })
  run(module.exports, require, module, __filename, __dirname)
  return module.exports
}

export function partAsset(name: string): string {
  return `${name}.cjs.br`
}
