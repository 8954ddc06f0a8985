// One CommonJS script holding Warren and its npm dependencies: the script that Node's
// single-executable mechanism embeds (it runs CommonJS only, and can load nothing but
// Node's built-in modules at run time, nor read files that packages keep beside their code).
// Code that only some processes use is kept in parts of its own, compressed, loaded on
// first use (see sea-part.ts): the etcd storage backend with its client (gRPC, protobufjs:
// half of all the code), the proxy's ACME certificates, ssh2, which only a node's SSH
// server uses, from its first connection on, prom-client, which only an auth server or a
// proxy with diag_addr uses, the auth server's and the proxy's code, which a node never runs,
// the node's SSH and SFTP servers, which it loads at its first SSH connection, warrenctl's
// commands, `warren install` and the user's commands (ssh, login, ls, play, known-hosts),
// which only people run (these take the modules they share with the main script from it:
// main-modules.ts), and the YAML library, which every process loads but which was a quarter
// of the main script.

import { writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { brotliCompressSync, constants as zlib } from 'node:zlib'
import { type BuildOptions, build, type Plugin } from 'esbuild'
import { buildWebConsole } from '../proxy/web-console/build.ts'
import { SEA_ASSET_PREFIX } from '../proxy/web-console/manifest.ts'
import { etcdProtosInline } from './etcd-protos.ts'
import { fromMainScript, mainModuleTable } from './main-modules.ts'
import { partAsset } from './sea-part.ts'

/** Modules built as parts of their own, by part name: a file of Warren's, or an npm package. */
const PARTS: Record<string, string> = {
  etcd: 'auth/backend/etcd.ts',
  acme: 'proxy/web-certificates.ts',
  ssh2: 'ssh2',
  'prom-client': 'prom-client',
  qrcode: 'qrcode',
  // Every process reads YAML (its config), so this part saves no memory: compressed, it
  // keeps the executable within its size budget, for the decompressor's pages in an idle
  // agent (bench:footprint).
  yaml: 'yaml',
  auth: 'auth/server.ts',
  proxy: 'proxy/proxy.ts',
  // The node's SSH server (sessions, SFTP, forwarding, ptys, recordings): loaded at the first
  // SSH connection (agent/ssh-on-demand.ts); the SFTP server and a forwarded agent's socket
  // run as the login in processes of their own. Apart, an idle node does not hold their
  // source: 0.2 MB less resident (bench:footprint; bench/results/2026-12-06-footprint-parts.md).
  'ssh-server': 'agent/ssh-server.ts',
  'sftp-server': 'agent/sftp/stdio.ts',
  'agent-socket': 'agent/agent-socket.ts',
  // Commands only people run.
  'client-ssh': 'cli/ssh.ts',
  'client-login': 'cli/login.ts',
  'client-ls': 'cli/ls.ts',
  'client-play': 'cli/play.ts',
  'client-known-hosts': 'cli/known-hosts.ts',
  // Commands that only people run, never a device's daemon.
  warrenctl: 'cli/warrenctl.ts',
  install: 'cli/install.ts',
}

/**
 * Parts that run beside the main script's code in one process: they take the modules they
 * share with it from it (main-modules.ts). Apart, the auth server's and the proxy's code
 * (0.22 MB) is neither held nor compiled by a node: 0.5 MB less in an idle agent. The same
 * holds, on a smaller scale, for the commands only people run.
 */
const BESIDE_MAIN = new Set([
  'auth',
  'proxy',
  'ssh-server',
  'sftp-server',
  'agent-socket',
  'client-ssh',
  'client-login',
  'client-ls',
  'client-play',
  'client-known-hosts',
  'warrenctl',
  'install',
])

/**
 * ssh2 tries `cpu-features` (to order ciphers) inside try/catch and does without it; its own
 * `sshcrypto.node` it never loads (patches/ssh2+1.17.0.patch). A single executable cannot
 * load addons, so any becomes a module that throws when required, as a missing one would.
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

/**
 * acme-client exports, next to its own crypto, a legacy API over node-forge (`acme.forge`)
 * that Warren never calls; node-forge is the largest module of the ACME part. The export
 * stays, as an object that says so when touched.
 */
const acmeForgeAbsent: Plugin = {
  name: 'acme-forge-absent',
  setup(build) {
    build.onResolve({ filter: /^\.\/crypto\/forge$/ }, (args) => (/[\\/]acme-client[\\/]/.test(args.importer) ? { path: 'acme-forge', namespace: 'absent' } : undefined))
    build.onLoad({ filter: /.*/, namespace: 'absent' }, () => ({
      contents: 'module.exports = new Proxy({}, { get() { throw new Error("acme-client\'s node-forge API is not part of the single executable") } })',
      loader: 'js',
    }))
  },
}

/** In the main script, an import of a part's module loads the part instead. */
function partsApart(root: string): Plugin {
  const isFile = (path: string) => path.endsWith('.ts')
  const byPath = new Map(Object.entries(PARTS).map(([name, path]) => [isFile(path) ? resolve(root, path) : path, name]))
  return {
    name: 'parts-apart',
    setup(build) {
      build.onResolve({ filter: /.*/ }, (args) => {
        if (args.kind === 'entry-point') return undefined
        const name = byPath.get(isFile(args.path) ? resolve(args.resolveDir, args.path) : args.path)
        return name === undefined ? undefined : { path: name, namespace: 'sea-part' }
      })
      build.onLoad({ filter: /.*/, namespace: 'sea-part' }, (args) => ({
        contents: `module.exports = require(${JSON.stringify(resolve(root, 'packaging/sea-part.ts'))}).loadPart(${JSON.stringify(args.path)})`,
        loader: 'js',
        resolveDir: root,
      }))
    },
  }
}

export interface BundleOptions {
  root: string
  entry: string
  /** The directory the main script and the parts are written to. */
  outdir: string
  /** Shown by `warren version`, through the global __WARREN_COMMIT__. */
  commit: string
}

export interface Bundle {
  /** The main script's file name in outdir. */
  main: string
  /** Asset name → file name in outdir, for the parts. */
  assets: Record<string, string>
}

export async function bundle(options: BundleOptions): Promise<Bundle> {
  const common: BuildOptions = {
    absWorkingDir: options.root,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node24',
    // A fifth smaller, and names stay as written, so stack traces (WARREN_DEBUG) still read.
    // Identifiers are not minified: that makes a smaller file, but V8 then took several
    // times the CPU and memory to compile the script, and an idle agent held more private
    // memory (see bench:footprint). No source map is made, and the licences' notices stay.
    minifyWhitespace: true,
    minifySyntax: true,
    plugins: [nativeAddonsAbsent, acmeForgeAbsent, etcdProtosInline, partsApart(options.root)],
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
  }
  const main = 'warren.cjs'
  // What the main script holds, for the parts that take their shared modules from it.
  const first = await build({ ...common, entryPoints: [options.entry], write: false, metafile: true, outfile: join(options.outdir, main) })
  if (first.errors.length > 0) throw new Error('bundling failed')
  const mainInputs = new Set(Object.keys(first.metafile!.inputs))
  const taken = new Set<string>()
  const assets: Record<string, string> = {}
  for (const [name, file] of Object.entries(PARTS)) {
    const plugins = BESIDE_MAIN.has(name) ? [fromMainScript(options.root, mainInputs, taken), ...common.plugins!] : common.plugins
    // Parts are fully minified: only the few processes that load one pay its compile cost.
    const part = await build({ ...common, plugins, minifyIdentifiers: true, entryPoints: [file], write: false, outfile: `${name}.cjs` })
    if (part.errors.length > 0) throw new Error(`bundling the part ${name} failed`)
    const source = part.outputFiles![0].contents
    const compressed = brotliCompressSync(source, { params: { [zlib.BROTLI_PARAM_QUALITY]: 11, [zlib.BROTLI_PARAM_SIZE_HINT]: source.length } })
    writeFileSync(join(options.outdir, partAsset(name)), compressed)
    assets[partAsset(name)] = partAsset(name)
  }
  // The web console's files, brotli-compressed as the proxy serves them (assets.ts).
  for (const file of await buildWebConsole(join(options.outdir, SEA_ASSET_PREFIX))) assets[SEA_ASSET_PREFIX + file] = SEA_ASSET_PREFIX + file
  // The main script again, now publishing the modules the parts take before the entry runs.
  const table = mainModuleTable(options.root, taken, PARTS)
  const stdin = {
    contents: `"use strict";\n${table}\nrequire(${JSON.stringify(resolve(options.root, options.entry))})`,
    resolveDir: options.root,
    sourcefile: 'main.js',
    loader: 'js' as const,
  }
  const result = await build({ ...common, stdin, outfile: join(options.outdir, main) })
  if (result.errors.length > 0) throw new Error('bundling failed')
  return { main, assets }
}
