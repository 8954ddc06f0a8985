// What `warren version` and `warrenctl version` print: Warren's version, the Node.js it runs
// on and the commit it was built from.

import { VERSION } from '../shared/version.ts'

declare const __WARREN_COMMIT__: string | undefined

export function versionLine(): string {
  return `Warren v${VERSION} node ${process.version} commit ${commit()}`
}

/** The commit the single executable was built from (defined by the build); from a checkout, git's. */
export function commit(): string {
  if (typeof __WARREN_COMMIT__ === 'string') return __WARREN_COMMIT__
  try {
    // Loaded here, not at the top: every agent runs the CLI, and child_process costs memory.
    const { execFileSync } = process.getBuiltinModule('node:child_process')
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: import.meta.dirname, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() || 'unknown'
  } catch {
    return 'unknown'
  }
}
