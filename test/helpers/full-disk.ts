// A disk that fills up, for real: a tmpfs of its own (root only), filled by dd to its last
// page, or to all but a few; removing `<mount>/filler` makes the room again.

import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Test } from 'tap'
import { tempDir } from './cluster.ts'

/** Why a test of a full disk is skipped here, if it is. */
export const cannotMountTmpfs = process.getuid?.() !== 0 ? 'needs root to mount a tmpfs' : undefined

/** A tmpfs of `size` (as mount takes it: `4m`) on a fresh folder, mounted until `t` ends; its path. */
export function mountTmpfs(t: Test, size: string): string {
  const mount = join(tempDir(), 'disk')
  mkdirSync(mount)
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', mount])
  t.teardown(() => spawnSync('umount', ['-l', mount]))
  return mount
}

/**
 * Fills the filesystem of `mount` with `<mount>/filler`, all of it or all but `pagesLeft` pages
 * (of 4 KiB), and checks that this is what is free.
 */
export function fillDisk(t: Test, mount: string, pagesLeft = 0): void {
  const reserve = join(mount, 'reserve')
  if (pagesLeft > 0) writeFileSync(reserve, Buffer.alloc(4096 * pagesLeft))
  // dd stops at the first write the filesystem refuses.
  spawnSync('dd', ['if=/dev/zero', `of=${join(mount, 'filler')}`, 'bs=4k'])
  if (pagesLeft > 0) rmSync(reserve)
  const free = pagesLeft === 0 ? 'the filesystem is full' : pagesLeft === 1 ? 'one page of the filesystem is free' : `${pagesLeft} pages of the filesystem are free`
  t.equal(statfsSync(mount).bavail, pagesLeft, free)
}
