// ssh2 compiles and instantiates a WebAssembly Poly1305 (for chacha20-poly1305) as soon as
// it is loaded, which costs an agent 0.8 MB of private memory and 4 MB of the executable's
// pages (V8's WebAssembly compilers) before any SSH connection exists. This esbuild plugin
// makes ssh2's `init` start on its first use instead: its server and client wait for it
// (`init.then(...)`) when a connection starts, and nowhere else.

import type { Plugin } from 'esbuild'
import { readFileSync } from 'node:fs'

const CRYPTO = /[\\/]node_modules[\\/]ssh2[\\/]lib[\\/]protocol[\\/]crypto\.js$/

/** [what ssh2 1.x has, what it becomes] */
const EDITS: [string, string][] = [
  ['let POLY1305_WASM_MODULE;', 'let POLY1305_WASM_MODULE, POLY1305_INIT;'],
  ['  init: (() => {\n', '  init: { then(onResolved, onRejected) { return (POLY1305_INIT ??= (() => {\n'],
  ['  })(),\n\n  NullCipher,', '  })()).then(onResolved, onRejected); } },\n\n  NullCipher,'],
]

export const ssh2Poly1305OnFirstUse: Plugin = {
  name: 'ssh2-poly1305-on-first-use',
  setup(build) {
    build.onLoad({ filter: CRYPTO }, (args) => {
      let source = readFileSync(args.path, 'utf8')
      for (const [from, to] of EDITS) {
        if (source.split(from).length !== 2) {
          throw new Error(`${args.path} no longer has ${JSON.stringify(from)} once as packaging/ssh2-poly1305.ts expects: update the plugin for this ssh2 version`)
        }
        source = source.replace(from, to)
      }
      return { contents: source, loader: 'js' }
    })
  },
}
