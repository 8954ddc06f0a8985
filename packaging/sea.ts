// Node's single-executable mechanism: the bundle becomes a blob (made by the Node that
// runs this build, the same version as the base binaries), and postject writes the blob
// into a copy of a base binary and flips the fuse that makes Node run it.

import { execFileSync } from 'node:child_process'
import { chmodSync, copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { WARREN_EXEC_ARGV } from '../shared/heap-tuning.ts'

/** The fuse Node checks for an injected blob; postject flips it. */
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2'

interface Postject {
  inject(file: string, resourceName: string, data: Buffer, options: { sentinelFuse: string }): Promise<void>
}
const postject = createRequire(import.meta.url)('postject') as Postject

/**
 * The blob for the script `main` and the `assets` (name → file), files in `workDir`. One
 * blob serves every architecture. Paths in the config are relative to `workDir`: the blob
 * records the script's path as given, and a temporary directory's name would make every
 * build differ.
 */
export function makeBlob(main: string, assets: Record<string, string>, workDir: string): string {
  writeFileSync(
    join(workDir, 'sea-config.json'),
    JSON.stringify(
      {
        main,
        assets,
        output: 'sea-prep.blob',
        disableExperimentalSEAWarning: true,
        // A code cache is specific to the V8 that made it: this build's, an x64 one.
        useCodeCache: false,
        useSnapshot: false,
        execArgv: WARREN_EXEC_ARGV,
      },
      null,
      2,
    ),
  )
  execFileSync(process.execPath, ['--experimental-sea-config', 'sea-config.json'], { cwd: workDir, stdio: ['ignore', 'ignore', 'inherit'] })
  return join(workDir, 'sea-prep.blob')
}

/** `output` := `baseBinary` with `blob` injected, executable. */
export async function injectBlob(baseBinary: string, blob: string, output: string): Promise<void> {
  rmSync(output, { force: true })
  copyFileSync(baseBinary, output)
  chmodSync(output, 0o755)
  await withoutNoteSectionWarnings(() => postject.inject(output, 'NODE_SEA_BLOB', readFileSync(blob), { sentinelFuse: SEA_FUSE }))
}

/**
 * postject's ELF parser warns once per note section of a stripped binary that it cannot
 * name them (strip drops their names); the injection is unaffected, so those lines are dropped.
 */
async function withoutNoteSectionWarnings(inject: () => Promise<void>): Promise<void> {
  const warn = console.warn
  console.warn = (...args: unknown[]) => {
    if (!/^warning: Can't find string offset for section name '\.note/.test(String(args[0]))) warn(...args)
  }
  try {
    await inject()
  } finally {
    console.warn = warn
  }
}
