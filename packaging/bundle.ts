// One CommonJS file holding all of Warren and its npm dependencies: the script that Node's
// single-executable mechanism embeds (it runs CommonJS only, and can load nothing but
// Node's built-in modules at run time, nor read files that packages keep beside their code).

import { build, type Plugin } from 'esbuild'
import { etcdProtosInline } from './etcd-protos.ts'

/**
 * ssh2 tries two native addons inside try/catch and falls back to JavaScript without them:
 * `cpu-features` (to order ciphers) and its own `sshcrypto.node`. A single executable cannot
 * load addons, so each becomes a module that throws when required, as a missing one would.
 */
const nativeAddonsAbsent: Plugin = {
  name: 'native-addons-absent',
  setup(build) {
    build.onResolve({ filter: /^cpu-features$|\.node$/ }, (args) => ({ path: args.path, namespace: 'native-addon' }))
    build.onLoad({ filter: /.*/, namespace: 'native-addon' }, (args) => ({
      contents: `throw new Error(${JSON.stringify(`${args.path}: native addons are not part of the single executable`)})`,
      loader: 'js',
    }))
  },
}

export interface BundleOptions {
  root: string
  entry: string
  outfile: string
  /** Shown by `warren version`, through the global __WARREN_COMMIT__. */
  commit: string
}

export async function bundle(options: BundleOptions): Promise<void> {
  const result = await build({
    absWorkingDir: options.root,
    entryPoints: [options.entry],
    outfile: options.outfile,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node24',
    // A fifth smaller, and names stay as written, so stack traces (WARREN_DEBUG) still read.
    // Identifiers are not minified: that saves another 0.6 MB of file, but V8 then took three
    // times the CPU and memory to compile the script (measured: +5.5 MB private memory in an
    // idle agent). No source map is made, and the licences' notices (2 KB) stay.
    minifyWhitespace: true,
    minifySyntax: true,
    plugins: [nativeAddonsAbsent, etcdProtosInline],
    // cli/*.ts run their own main when they are the entry script; in the bundle the entry
    // is packaging/entry.ts, so they must not. import.meta has no CommonJS equivalent:
    // its url/dirname/filename become the executable's own (__filename is execPath there).
    define: {
      'import.meta.main': 'false',
      'import.meta.url': '__warrenImportMetaUrl',
      'import.meta.dirname': '__dirname',
      'import.meta.filename': '__filename',
      __WARREN_COMMIT__: JSON.stringify(options.commit),
    },
    banner: { js: 'var __warrenImportMetaUrl = require("node:url").pathToFileURL(__filename).href;' },
    // An import.meta that slipped through would be an empty object at run time: fail instead.
    logOverride: { 'empty-import-meta': 'error' },
    logLevel: 'warning',
  })
  if (result.errors.length > 0) throw new Error('bundling failed')
}
