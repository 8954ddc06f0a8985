// Parts that run beside the main script's own code in one process (the auth server and the
// proxy, which `warren start` runs with any other role) take every module that the main
// script also holds from the main script instead of carrying a copy: a copy would have
// classes of its own (its errors would not be the CLI's WarrenError) and state of its own
// (the backend's operation counters that /metrics reads). The main script publishes those
// modules in a table, keyed by their path in esbuild's metafile; a part looks them up there.

import { relative, resolve } from 'node:path'
import type { Plugin } from 'esbuild'

/** The global under which the main script publishes its table. */
const TABLE = 'globalThis[Symbol.for("warren.mainModules")]'

/** Marks the resolutions this plugin asks esbuild for itself, so that it does not see them again. */
const OWN_LOOKUP = Symbol('own lookup')

/**
 * In a part: an import of a module in `mainInputs` (the main script's metafile inputs: files
 * and other parts) becomes a lookup in the main script's table; `taken` collects their keys.
 */
export function fromMainScript(root: string, mainInputs: Set<string>, taken: Set<string>): Plugin {
  return {
    name: 'from-main-script',
    setup(build) {
      build.onResolve({ filter: /.*/ }, async (args) => {
        if (args.kind === 'entry-point' || args.pluginData === OWN_LOOKUP) return undefined
        const resolved = await build.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, importer: args.importer, pluginData: OWN_LOOKUP })
        if (resolved.errors.length > 0 || resolved.external) return undefined
        const key = resolved.namespace === 'file' ? relative(root, resolved.path) : `${resolved.namespace}:${resolved.path}`
        if (!mainInputs.has(key)) return { path: resolved.path, namespace: resolved.namespace, pluginData: resolved.pluginData, sideEffects: resolved.sideEffects }
        taken.add(key)
        return { path: key, namespace: 'main-script' }
      })
      build.onLoad({ filter: /.*/, namespace: 'main-script' }, (args) => ({ contents: `module.exports = ${TABLE}(${JSON.stringify(args.path)})`, loader: 'js' }))
    },
  }
}

/**
 * The main script's table, as the source of a module that the entry imports first: `keys`
 * are the modules that parts take; `partPaths` maps a part's name to what imports it.
 */
export function mainModuleTable(root: string, keys: Iterable<string>, partPaths: Record<string, string>): string {
  const specifier = (key: string) => (key.startsWith('sea-part:') ? partSpecifier(root, partPaths[key.slice('sea-part:'.length)]) : resolve(root, key))
  const entries = [...keys].sort().map((key) => `  ${JSON.stringify(key)}: () => require(${JSON.stringify(specifier(key))}),`)
  return [`const modules = {`, ...entries, `}`, `${TABLE} = (key) => modules[key]()`].join('\n')
}

function partSpecifier(root: string, path: string): string {
  return path.endsWith('.ts') ? resolve(root, path) : path
}
