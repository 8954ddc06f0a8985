// `npm run package [-- --arch=x64]`: dist/warren-linux-x64 and dist/warren-linux-arm64,
// each one self-contained executable (Node 24 and all of Warren), built from npm registry
// packages only. Run it through npm so that the pinned Node builds the blob.

import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { bundle } from './bundle.ts'
import { type Arch, baseNodeBinary } from './node-binary.ts'
import { injectBlob, makeBlob } from './sea.ts'

const ROOT = resolve(import.meta.dirname, '..')
const DIST = join(ROOT, 'dist')
const CACHE = join(ROOT, 'node_modules/.cache/warren-packaging')
const ARCHES: Arch[] = ['x64', 'arm64']

const { values } = parseArgs({ options: { arch: { type: 'string', multiple: true } } })
const arches = (values.arch ?? ARCHES) as Arch[]
for (const arch of arches) if (!ARCHES.includes(arch)) fail(`unknown --arch=${arch}: use ${ARCHES.join(' or ')}`)

// The blob must come from the same Node version as the binaries it is injected into.
const version = process.versions.node
const pinned = JSON.parse(readFileSync(join(ROOT, 'node_modules/node/package.json'), 'utf8')).version as string
if (version !== pinned) fail(`this is Node ${version} but the project pins ${pinned}: run "npm run package"`)

const started = performance.now()
const step = (what: string) => console.log(`[${((performance.now() - started) / 1000).toFixed(1)}s] ${what}`)
const work = mkdtempSync(join(tmpdir(), 'warren-package-'))
try {
  const commit = gitCommit()
  step(`bundling cli/warren.ts and cli/warrenctl.ts (commit ${commit})`)
  const { main, assets } = await bundle({ root: ROOT, entry: 'packaging/entry.ts', outdir: work, commit })
  step('making the single-executable blob')
  const blob = makeBlob(main, assets, work)
  mkdirSync(DIST, { recursive: true })
  for (const arch of arches) {
    // A failed build leaves no executable from an older one behind.
    const output = join(DIST, `warren-linux-${arch}`)
    rmSync(output, { force: true })
    step(`node-linux-${arch}@${version}: fetching, stripping and trimming its ICU data (once)`)
    const base = baseNodeBinary(arch, version, CACHE)
    if (base.icu) step(`ICU data: small-icu's ${base.icu.items} items kept, ${(base.icu.freed / 1e6).toFixed(1)} MB zeroed`)
    step(`injecting the blob into ${output}`)
    await injectBlob(base.path, blob, output)
    step(`${output}: ${(statSync(output).size / 1e6).toFixed(1)} MB`)
  }
} catch (error) {
  console.error(`npm run package: ${(error as Error).message}`)
  process.exitCode = 1
} finally {
  rmSync(work, { recursive: true, force: true })
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  } catch {
    return 'unknown'
  }
}

function fail(message: string): never {
  console.error(`npm run package: ${message}`)
  process.exit(1)
}
