// A credentials dir another user could write into is neither written into nor read: its
// ssh_config names the ProxyCommand ssh runs as the user, and its host CA and known_hosts.d
// what ssh and warren trust. Ours and writable by others, it is made 0700 before a write.

import { execFile } from 'node:child_process'
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { UserCerts } from '../shared/protocol/admin.ts'
import { generateUserKeys, writeUserCredentials } from './credentials-files.ts'
import { forgetHostKeys, HOST_KEYS_DIR } from './host-keys.ts'
import { checkCredentialsDir, loadProfile, PROFILE_FILES, profilePath } from './profile.ts'

const NOBODY = 65534
const root = process.getuid?.() === 0
const SIGNED = {
  ssh_cert: 'ssh-ed25519-cert-v01@openssh.com AAAA',
  tls_cert: '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n',
  valid_before: Date.UTC(2030, 0, 1),
  logins: ['pi'],
  roles: ['access'],
  cluster_name: 'home',
  host_ca_certs: ['-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n'],
  proxies: ['proxy.example.com:3080'],
  known_hosts: [],
} satisfies UserCerts
const keys = generateUserKeys()
const write = (dir: string) => writeUserCredentials(dir, keys, SIGNED, { user: 'alice', sshConfig: true })

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'warren-credentials-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** What `fn` writes to standard error. */
function stderrOf(fn: () => void): string {
  const original = process.stderr.write
  let written = ''
  process.stderr.write = ((chunk: string) => {
    written += chunk
    return true
  }) as typeof process.stderr.write
  try {
    fn()
  } finally {
    process.stderr.write = original
  }
  return written
}

t.test('credentials are written into a new dir made 0700, and read back', async (t) => {
  const dir = join(tempDir(), 'creds')
  write(dir)
  t.equal(statSync(dir).mode & 0o7777, 0o700)
  t.equal(loadProfile(dir).user, 'alice')
  t.equal(profilePath(dir, 'sshConfig'), join(dir, PROFILE_FILES.sshConfig))
})

t.test('our own dir that others may write into is made 0700 before the write, with a warning', async (t) => {
  const dir = join(tempDir(), 'creds')
  mkdirSync(dir)
  chmodSync(dir, 0o777)
  const warning = stderrOf(() => write(dir))
  t.equal(statSync(dir).mode & 0o7777, 0o700)
  t.equal(warning, `WARNING: credentials dir ${dir} was writable by other users (mode 0777); its mode is now 0700\n`)
  t.ok(existsSync(join(dir, PROFILE_FILES.sshConfig)), 'and the credentials are written')
})

t.test('our own credentials that others may write into are not read, nor made private', async (t) => {
  const dir = join(tempDir(), 'creds')
  write(dir)
  chmodSync(dir, 0o770)
  const message = `credentials dir ${dir} is writable by users other than its owner (mode 0770, owner uid ${process.getuid?.()}), who could replace its ssh_config`
  t.throws(() => loadProfile(dir), { message })
  t.throws(() => profilePath(dir, 'tlsKey'), { message })
  t.throws(() => forgetHostKeys(dir, 'pi-1'), { message })
  t.notOk(existsSync(join(dir, HOST_KEYS_DIR)), 'no host keys file was written')
  t.equal(statSync(dir).mode & 0o7777, 0o770, 'its mode is left for its owner to judge')
})

t.test('a credentials dir under a directory others may write into, without the sticky bit, is refused', async (t) => {
  const above = join(tempDir(), 'shared')
  mkdirSync(above)
  chmodSync(above, 0o777)
  const dir = join(above, 'creds')
  t.throws(() => write(dir), { message: `credentials dir ${dir} is under ${above}, which users other than its owner may write into (mode 0777, no sticky bit)` })
  t.same(readdirSync(dir), [], 'no credentials were written')
  chmodSync(above, 0o1777)
  t.doesNotThrow(() => write(dir), 'with the sticky bit, as /tmp, it is fine')
})

t.test("another user's credentials dir", { skip: !root && 'needs root to give a directory to another user' }, async (t) => {
  t.test('is not written into', async (t) => {
    const dir = join(tempDir(), 'creds')
    mkdirSync(dir, { mode: 0o755 })
    chownSync(dir, NOBODY, NOBODY)
    t.throws(() => write(dir), {
      message: `credentials dir ${dir} belongs to uid ${NOBODY}, not to root, who runs this: its owner could replace its ssh_config (whose ProxyCommand runs as you), host keys or host CA`,
    })
    t.same(readdirSync(dir), [], 'nothing was written')
    t.equal(statSync(dir).uid, NOBODY)
  })

  t.test('is not read', async (t) => {
    const dir = join(tempDir(), 'creds')
    write(dir)
    chownSync(dir, NOBODY, NOBODY)
    const message = `credentials dir ${dir} belongs to uid ${NOBODY}`
    t.throws(() => checkCredentialsDir(dir), { message })
    t.throws(() => loadProfile(dir), { message })
    t.throws(() => profilePath(dir, 'hostCA'), { message })
    t.throws(() => forgetHostKeys(dir, 'pi-1'), { message })
    t.notOk(existsSync(join(dir, HOST_KEYS_DIR)), 'no host keys file was written')
  })

  t.test('is refused by warren ssh and by the ProxyCommand, warren proxy ssh', async (t) => {
    const dir = join(tempDir(), 'creds')
    write(dir)
    chownSync(dir, NOBODY, NOBODY)
    const warren = join(import.meta.dirname, 'warren.ts')
    for (const args of [
      ['ssh', `--identity=${dir}`, 'pi@pi-1', 'true'],
      ['proxy', 'ssh', `--identity=${dir}`, '--proxy=127.0.0.1:1', 'pi@pi-1:22'],
    ]) {
      const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = execFile(process.execPath, [warren, ...args], { timeout: 30_000 }, (error, _stdout, stderr) => resolve({ code: error ? Number(error.code) : 0, stderr }))
        child.stdin?.end()
      })
      t.equal(result.code, 1, `warren ${args[0]} ${args[1]}: refused`)
      t.match(result.stderr, `credentials dir ${dir} belongs to uid ${NOBODY}`)
      t.notOk(existsSync(join(dir, HOST_KEYS_DIR)), 'no host keys file was written')
    }
  })
})
