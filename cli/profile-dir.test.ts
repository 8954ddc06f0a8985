// Where credentials go when no flag says: $WARREN_HOME, else ~/.warren, always as an absolute
// path, since the ssh_config written there names its files and ssh may run from anywhere.

import { mkdtempSync, realpathSync } from 'node:fs'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { defaultProfileDir } from './profile.ts'

t.test('a relative WARREN_HOME is taken from the directory it was given in', async (t) => {
  const saved = { home: process.env.WARREN_HOME, cwd: process.cwd() }
  t.teardown(() => {
    process.chdir(saved.cwd)
    if (saved.home === undefined) delete process.env.WARREN_HOME
    else process.env.WARREN_HOME = saved.home
  })
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'warren-profile-')))
  process.chdir(dir)
  process.env.WARREN_HOME = 'creds/warren'
  t.equal(defaultProfileDir(), join(dir, 'creds/warren'))
  process.env.WARREN_HOME = '~/elsewhere'
  t.equal(defaultProfileDir(), join(homedir(), 'elsewhere'))
  delete process.env.WARREN_HOME
  t.equal(defaultProfileDir(), join(homedir(), '.warren'))
})
