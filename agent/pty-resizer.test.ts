// A window change is set with `stty` on the session's pty, a few a second at most. One that
// could not be set (its pty not found yet, stty failing) is not taken as set: the next
// change of that size sets it, where it used to be skipped as the size already set.

import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { until } from '../test/helpers/until.ts'
import { PtyResizer, RESIZE_INTERVAL_MS } from './ssh-session.ts'

t.test('a size not set (no pty yet) is set by the next change of that size', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'warren-resizer-'))
  const runs = join(dir, 'runs')
  writeFileSync(join(dir, 'stty'), `#!/bin/sh\necho "$*" >> '${runs}'\n`, { mode: 0o755 })
  chmodSync(join(dir, 'stty'), 0o755)
  const path = process.env.PATH
  process.env.PATH = `${dir}:${path}`
  t.teardown(() => {
    process.env.PATH = path
    rmSync(dir, { recursive: true, force: true })
  })
  let ttys = 0
  const applied: string[] = []
  // The pty is not there at the first change, as just after a session starts.
  const resizer = new PtyResizer(
    async () => (ttys++ === 0 ? undefined : '/dev/pts/test'),
    (rows, cols) => applied.push(`${rows}x${cols}`),
  )
  resizer.resize(30, 100)
  await sleep(RESIZE_INTERVAL_MS + 50)
  t.same(applied, [], 'not set: no pty')
  resizer.resize(30, 100)
  await until('the size to be set', () => applied.length > 0)
  t.same(applied, ['30x100'])
  t.match(readFileSync(runs, 'utf8'), /^-F \/dev\/pts\/test rows 30 cols 100$/m, 'by stty on the pty')
  resizer.stop()
})
