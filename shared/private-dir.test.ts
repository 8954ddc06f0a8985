// Which directories may hold keys: the directory and every one above it must belong to the
// running user or root, writable by nobody else (above it: unless sticky, as /tmp); a
// directory of ours that others may write into is made 0700 only when the caller asks.

import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { checkPrivateDir, type PrivateDirRules } from './private-dir.ts'

const NOBODY = 65534
const RULES: PrivateDirRules = { what: 'key dir', harm: 'replace its keys' }

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'warren-private-dir-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A directory made with `mode` (umask aside) and, when given, owned by `uid`. */
function dirWith(path: string, mode: number, uid?: number): string {
  mkdirSync(path)
  if (uid !== undefined) chownSync(path, uid, uid)
  chmodSync(path, mode)
  return path
}

t.test('our own directory, private or only readable by others, passes', async (t) => {
  for (const mode of [0o700, 0o755]) t.doesNotThrow(() => checkPrivateDir(dirWith(join(tempDir(), 'keys'), mode), RULES), mode.toString(8))
})

t.test('our own directory that others may write into: refused as it is, or made 0700 when asked', async (t) => {
  const dir = dirWith(join(tempDir(), 'keys'), 0o777)
  t.throws(() => checkPrivateDir(dir, RULES), {
    message: `key dir ${dir} is writable by users other than its owner (mode 0777, owner uid ${process.getuid?.()}), who could replace its keys; check what it holds, then make it private: chmod 0700 ${dir}`,
  })
  t.equal(statSync(dir).mode & 0o7777, 0o777, 'refused: its mode is left alone')
  const told: string[] = []
  checkPrivateDir(dir, { ...RULES, madePrivate: (mode) => told.push(mode) })
  t.equal(statSync(dir).mode & 0o7777, 0o700)
  t.same(told, ['0777'], 'the old mode is told')
})

t.test('a missing directory passes under directories of our own, and under a sticky one', async (t) => {
  const top = tempDir()
  t.doesNotThrow(() => checkPrivateDir(join(top, 'a', 'b'), RULES))
  const sticky = dirWith(join(top, 'shared'), 0o1777)
  t.doesNotThrow(() => checkPrivateDir(join(sticky, 'keys'), RULES), 'sticky and writable by all, as /tmp')
})

t.test('a file is not a directory', async (t) => {
  const file = join(tempDir(), 'keys')
  writeFileSync(file, '')
  t.throws(() => checkPrivateDir(file, RULES), { message: `key dir ${file} exists but is not a directory` })
})

t.test('a directory above that others may write into, without the sticky bit, is refused', async (t) => {
  for (const mode of [0o777, 0o775, 0o757]) {
    const above = dirWith(join(tempDir(), 'above'), mode)
    const dir = dirWith(join(above, 'keys'), 0o700)
    const octal = mode.toString(8).padStart(4, '0')
    t.throws(
      () => checkPrivateDir(dir, RULES),
      { message: `key dir ${dir} is under ${above}, which users other than its owner may write into (mode ${octal}, no sticky bit)` },
      octal,
    )
    t.throws(() => checkPrivateDir(join(above, 'missing'), RULES), { message: `is under ${above}, which users other than its owner may write into` }, `${octal}, a missing dir`)
  }
})

t.test("someone else's", { skip: process.getuid?.() !== 0 && 'needs root to give a directory to another user' }, async (t) => {
  t.test('directory is refused, also when only its owner may write into it', async (t) => {
    for (const mode of [0o700, 0o755]) {
      const dir = dirWith(join(tempDir(), 'keys'), mode, NOBODY)
      t.throws(
        () => checkPrivateDir(dir, { ...RULES, madePrivate: () => t.fail('not ours to change') }),
        {
          message: `key dir ${dir} belongs to uid ${NOBODY}, not to root, who runs this: its owner could replace its keys; make it root's (chown root ${dir} && chmod 0700 ${dir})`,
        },
        mode.toString(8),
      )
      t.equal(statSync(dir).mode & 0o7777, mode, 'its mode is left alone')
      t.equal(statSync(dir).uid, NOBODY)
    }
  })

  t.test('directory that others may write into is refused, never made private', async (t) => {
    const dir = dirWith(join(tempDir(), 'keys'), 0o777, NOBODY)
    t.throws(() => checkPrivateDir(dir, { ...RULES, madePrivate: () => t.fail('not ours to change') }), {
      message: `key dir ${dir} is writable by users other than its owner (mode 0777, owner uid ${NOBODY}), who could replace its keys; make it private to root: chown root ${dir} && chmod 0700 ${dir}`,
    })
    t.equal(statSync(dir).mode & 0o7777, 0o777)
  })

  t.test('directory reached through a symlink of ours is refused', async (t) => {
    const top = tempDir()
    const target = dirWith(join(top, 'theirs'), 0o755, NOBODY)
    const link = join(top, 'keys')
    symlinkSync(target, link)
    t.throws(() => checkPrivateDir(link, RULES), { message: `key dir ${link} belongs to uid ${NOBODY}` })
  })

  t.test('directory above, even private and sticky, is refused: its owner may rename what is in it', async (t) => {
    for (const mode of [0o755, 0o1777]) {
      const above = dirWith(join(tempDir(), 'above'), mode, NOBODY)
      const dir = dirWith(join(above, 'keys'), 0o700)
      const message = `key dir ${dir} is under ${above}, which belongs to uid ${NOBODY}, not to root, who runs this: its owner could move the key dir away and put one of their own in its place`
      t.throws(() => checkPrivateDir(dir, RULES), { message }, mode.toString(8))
      // Also above a directory that is still to be made.
      const missing = join(above, 'new', 'keys')
      t.throws(() => checkPrivateDir(missing, RULES), { message: `key dir ${missing} is under ${above}, which belongs to uid ${NOBODY}` }, `${mode.toString(8)}, a missing dir`)
    }
  })

  t.test('directory further up is refused as well', async (t) => {
    const far = dirWith(join(tempDir(), 'far'), 0o755, NOBODY)
    const near = dirWith(join(far, 'near'), 0o755)
    const dir = dirWith(join(near, 'keys'), 0o700)
    t.throws(() => checkPrivateDir(dir, RULES), { message: `key dir ${dir} is under ${far}, which belongs to uid ${NOBODY}` })
  })
})
