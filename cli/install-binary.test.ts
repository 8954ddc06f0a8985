// `warren install` writes a unit that runs --binary as root: an executable (or a directory
// above it) that another user could replace is refused, as it would be theirs to run as root.

import { chmodSync, chownSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { checkBinaryPath } from './install.ts'

const NOBODY = 65534

t.test(
  'an executable only root (or the installer) can replace passes; one another user can replace is refused',
  { skip: process.getuid?.() !== 0 ? 'needs root to give files away' : false },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'warren-binary-'))
    const binary = (name: string, mode = 0o755) => {
      const path = join(dir, name)
      writeFileSync(path, '#!/bin/sh\n', { mode })
      chmodSync(path, mode)
      return path
    }
    t.doesNotThrow(() => checkBinaryPath(binary('good')), "root's, not writable by others")
    t.doesNotThrow(() => checkBinaryPath(join(dir, 'not-there-yet')), 'not there yet, in a safe directory')
    t.throws(() => checkBinaryPath(binary('world-writable', 0o777)), /could replace what the unit runs as root/, 'writable by others')
    const given = binary('given-away')
    chownSync(given, NOBODY, NOBODY)
    t.throws(() => checkBinaryPath(given), /owned by uid 65534/, "another user's")
    const theirs = join(dir, 'theirs')
    mkdirSync(theirs)
    chownSync(theirs, NOBODY, NOBODY)
    t.throws(() => checkBinaryPath(join(theirs, 'warren')), /the directory of --binary/, "in another user's directory")
  },
)
