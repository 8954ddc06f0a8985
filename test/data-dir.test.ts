// A data dir that other users may write into: refused when it belongs to someone else,
// made private (0700, with a warning) when it belongs to the user running warren. One that
// belongs to another user, or sits under a directory another user owns, is refused too.

import { chmodSync, chownSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { AuthProcess, tempDir, warren } from './helpers/cluster.ts'

const NOBODY = 65534
const root = process.getuid?.() === 0

t.test("someone else's data dir that others may write into is refused; nothing is written", { skip: !root && 'needs root to give a directory to another user' }, async (t) => {
  for (const mode of [0o777, 0o1777, 0o770]) {
    const dir = join(tempDir(), 'data')
    mkdirSync(dir)
    chownSync(dir, NOBODY, NOBODY)
    chmodSync(dir, mode)
    const config = join(tempDir(), 'warren.yaml')
    writeFileSync(config, `version: v1\ndata_dir: ${dir}\nauth_service:\n  listen_addr: 127.0.0.1:0\n  cluster_name: test-cluster\n`)
    const octal = mode.toString(8).padStart(4, '0')
    const result = await warren(['start', '--roles=auth', `--config=${config}`])
    t.equal(result.code, 1, `mode ${octal}: refused`)
    t.match(result.stderr, `data dir ${dir} is writable by users other than its owner (mode ${octal}, owner uid ${NOBODY})`)
    t.same(readdirSync(dir), [], 'nothing was created in it')
    t.equal(statSync(dir).mode & 0o7777, mode, 'its mode is left alone')
  }
})

t.test(
  "a data dir of another user's, or under one, is refused though only its owner may write into it",
  { skip: !root && 'needs root to give a directory to another user' },
  async (t) => {
    const theirs = join(tempDir(), 'theirs')
    mkdirSync(theirs, { mode: 0o755 })
    chownSync(theirs, NOBODY, NOBODY)
    const under = join(tempDir(), 'above')
    mkdirSync(under, { mode: 0o755 })
    chownSync(under, NOBODY, NOBODY)
    const ours = join(under, 'data')
    mkdirSync(ours, { mode: 0o700 })
    const refusals = [
      { dir: theirs, message: `data dir ${theirs} belongs to uid ${NOBODY}, not to root, who runs this: its owner could replace its keys` },
      { dir: ours, message: `data dir ${ours} is under ${under}, which belongs to uid ${NOBODY}` },
    ]
    for (const { dir, message } of refusals) {
      const config = join(tempDir(), 'warren.yaml')
      writeFileSync(config, `version: v1\ndata_dir: ${dir}\nauth_service:\n  listen_addr: 127.0.0.1:0\n  cluster_name: test-cluster\n`)
      const result = await warren(['start', '--roles=auth', `--config=${config}`])
      t.equal(result.code, 1, `${dir}: refused`)
      t.match(result.stderr, message)
      t.same(readdirSync(dir), [], 'nothing was created in it')
    }
  },
)

t.test('our own data dir that others may write into is made 0700, with a warning', async (t) => {
  const dir = join(tempDir(), 'data')
  mkdirSync(dir)
  chmodSync(dir, 0o777)
  const auth = new AuthProcess({ dataDir: dir, authServiceYaml: 'log: { format: json }' })
  t.teardown(() => auth.stop())
  await auth.start()
  t.equal(statSync(dir).mode & 0o7777, 0o700)
  const warnings = auth.daemon.stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line))
    .filter((entry) => entry.level === 'warn')
  t.match(warnings, [{ path: dir, mode: '0777', new_mode: '0700' }], 'one warning names the path and the old mode')
  t.equal((await auth.ctl(['status'])).code, 0, 'and the auth server runs')
})

t.test("an auth server's recording_dir outside the data dir is held to the same rules", { skip: !root && 'needs root to give a directory to another user' }, async (t) => {
  const recordings = join(tempDir(), 'recordings')
  mkdirSync(recordings)
  chownSync(recordings, NOBODY, NOBODY)
  chmodSync(recordings, 0o777)
  const dataDir = join(tempDir(), 'data')
  const config = join(tempDir(), 'warren.yaml')
  writeFileSync(config, `version: v1\ndata_dir: ${dataDir}\nauth_service:\n  listen_addr: 127.0.0.1:0\n  cluster_name: test-cluster\n  recording_dir: ${recordings}\n`)
  const result = await warren(['start', '--roles=auth', `--config=${config}`])
  t.equal(result.code, 1, 'refused')
  t.match(result.stderr, `auth_service.recording_dir ${recordings} is writable by users other than its owner (mode 0777, owner uid ${NOBODY})`)
  t.same(readdirSync(recordings), [], 'nothing was created in it')
})
