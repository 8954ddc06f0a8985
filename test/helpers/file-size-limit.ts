// Runs a script in a child process whose files may grow only so far (`ulimit -f`, RLIMIT_FSIZE),
// as a full disk or a quota stops them: a write there takes part of its bytes and says so only
// in its count, and the next one fails (EFBIG; the script hears SIGXFSZ rather than dying of
// it, as a full disk sends no signal). The script is TypeScript run by this Node; it prints
// JSON, returned parsed.

import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** What `script` printed, parsed; `kib` is the limit in KiB (ulimit's 1024-byte blocks). */
export function underFileSizeLimit<T>(kib: number, script: string): T {
  const dir = mkdtempSync(join(tmpdir(), 'warren-fsize-'))
  try {
    const path = join(dir, 'script.ts')
    writeFileSync(path, `process.on('SIGXFSZ', () => {})\n${script}`)
    // No compile cache: the child would write it under the same limit, and fail on its way out.
    const { NODE_COMPILE_CACHE: _, ...env } = process.env
    const out = execFileSync('bash', ['-c', `ulimit -f ${kib} && exec "$0" "$1"`, process.execPath, path], { cwd: dir, encoding: 'utf8', env })
    return JSON.parse(out) as T
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** An absolute import path for a module of this repository, for a script run elsewhere. */
export function repoModule(relative: string): string {
  return JSON.stringify(join(import.meta.dirname, '..', '..', relative))
}
