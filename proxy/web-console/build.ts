// Builds the web console's browser app (app/) into what the proxy serves: one script and one
// stylesheet (xterm's included) under content-hashed names, and the index.html that loads
// them. Every file is stored brotli-compressed (the proxy sends it as it is stored) with a
// manifest of them. `npm install` runs this into proxy/web-console/dist/ (where the proxy
// reads them from a checkout); `npm run package` puts the same files into the executable.

import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { brotliCompressSync, constants as zlib } from 'node:zlib'
import { build } from 'esbuild'
import { MANIFEST, type ManifestEntry } from './manifest.ts'

const ROOT = resolve(import.meta.dirname, '../..')
/** Where a checkout keeps the built console, which assets.ts reads outside the executable. */
export const CHECKOUT_DIST = join(import.meta.dirname, 'dist')

/** The browsers the app is written for: those with WebSocket, fetch, ES2022 and CSS grid. */
const TARGETS = ['chrome110', 'firefox110', 'safari16', 'edge110']

/** Writes the console's files and manifest into `outdir`; answers their file names there. */
export async function buildWebConsole(outdir: string): Promise<string[]> {
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: { app: 'proxy/web-console/app/main.ts' },
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: TARGETS,
    minify: true,
    // Licence notices stay, at the end of each file.
    legalComments: 'eof',
    entryNames: '[name]-[hash]',
    outdir: 'assets',
    write: false,
    logLevel: 'warning',
  })
  if (result.errors.length > 0) throw new Error('building the web console failed')
  const files = new Map<string, Uint8Array>()
  for (const output of result.outputFiles) files.set(`assets/${basename(output.path)}`, output.contents)
  const script = [...files.keys()].find((name) => name.endsWith('.js'))
  const style = [...files.keys()].find((name) => name.endsWith('.css'))
  if (!script || !style) throw new Error('building the web console made no script or no stylesheet')
  files.set('index.html', Buffer.from(indexHtml(script, style)))

  rmSync(outdir, { recursive: true, force: true })
  const manifest: ManifestEntry[] = []
  for (const [path, contents] of files) {
    const file = `${path}.br`
    mkdirSync(dirname(join(outdir, file)), { recursive: true })
    writeFileSync(join(outdir, file), brotliCompressSync(contents, { params: { [zlib.BROTLI_PARAM_QUALITY]: 11, [zlib.BROTLI_PARAM_SIZE_HINT]: contents.length } }))
    manifest.push({ path, file, size: contents.length })
  }
  writeFileSync(join(outdir, MANIFEST), JSON.stringify(manifest, null, 2))
  return [MANIFEST, ...manifest.map((entry) => entry.file)]
}

/** The checkout's build, made unless there is one (`npm install` makes it): for tests and scripts. */
export async function builtInCheckout(): Promise<void> {
  if (!existsSync(join(CHECKOUT_DIST, MANIFEST))) await buildWebConsole(CHECKOUT_DIST)
}

/** The one page: no inline script or style (the Content-Security-Policy allows neither). */
function indexHtml(script: string, style: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Warren</title>
<link rel="stylesheet" href="/web/${style}">
<script src="/web/${script}" defer></script>
</head>
<body>
<noscript>The Warren web console needs JavaScript.</noscript>
</body>
</html>
`
}

if (import.meta.main) {
  const written = await buildWebConsole(CHECKOUT_DIST)
  console.log(`web console: ${written.length - 1} files in ${CHECKOUT_DIST}`)
}
