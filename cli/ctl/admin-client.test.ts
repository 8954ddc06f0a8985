// How warrenctl picks who it acts as: the local admin identity when there is one or a flag
// names it, else (or with --proxy) the login of warren login, of --cluster when there are
// several. Nothing connects here: each case checks which server and credentials a client
// gets, or the refusal.

import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { adminIdentityPath } from '../../auth/admin-identity.ts'
import { DEFAULTS } from '../../shared/config.ts'
import { UsageError, WarrenError } from '../../shared/errors.ts'
import { createCA } from '../../shared/x509.ts'
import { PROFILE_FILES, type Profile } from '../profile.ts'
import { type AdminFlags, connectAdmin } from './admin-client.ts'

const ca = createCA('test CA', 'test')
const keyPem = ca.key.export({ type: 'pkcs8', format: 'pem' }) as string
const NOW = Date.UTC(2026, 0, 1)

/** A WARREN_HOME with a login to each cluster named, valid until `validBefore`. */
function home(clusters: string[], validBefore = NOW + 3_600_000): string {
  const dir = mkdtempSync(join(tmpdir(), 'warren-ctl-home-'))
  for (const cluster of clusters) {
    const at = join(dir, cluster)
    mkdirSync(at)
    const profile: Profile = { cluster_name: cluster, user: 'eve', logins: ['root'], proxies: [`proxy.${cluster}:3080`], valid_before: validBefore, roles: ['editor'] }
    writeFileSync(join(at, PROFILE_FILES.profile), JSON.stringify(profile))
    writeFileSync(join(at, PROFILE_FILES.hostCA), ca.certPem)
    writeFileSync(join(at, PROFILE_FILES.tlsCert), ca.certPem)
    writeFileSync(join(at, PROFILE_FILES.tlsKey), keyPem)
  }
  return dir
}

/** connectAdmin with WARREN_HOME=`dir`: the server it would talk to, or what it threw. */
async function chosen(dir: string, flags: AdminFlags): Promise<string | Error> {
  const before = process.env.WARREN_HOME
  process.env.WARREN_HOME = dir
  try {
    const admin = connectAdmin(flags, NOW)
    await admin.client.close()
    return admin.identity ? `identity ${admin.client.server}` : `login ${admin.client.server}`
  } catch (error) {
    return error as Error
  } finally {
    if (before === undefined) delete process.env.WARREN_HOME
    else process.env.WARREN_HOME = before
  }
}

function dataDirWithIdentity(): string {
  const dir = mkdtempSync(join(tmpdir(), 'warren-ctl-data-'))
  mkdirSync(join(dir, 'admin'))
  const identity = { auth_server: '127.0.0.1:3025', cluster_name: 'alpha', host_ca_certs: [ca.certPem], cert: ca.certPem, key: keyPem }
  writeFileSync(adminIdentityPath(dir), JSON.stringify(identity))
  return dir
}

const noLocalIdentity = !existsSync(adminIdentityPath(DEFAULTS.dataDir))

t.test('the local admin identity, when a flag names it, even with a login', async (t) => {
  t.equal(await chosen(home(['alpha']), { 'data-dir': dataDirWithIdentity() }), 'identity 127.0.0.1:3025')
})

t.test('the login through its proxy when there is no admin identity here, or with --proxy', { skip: !noLocalIdentity && 'this host has an admin identity' }, async (t) => {
  t.equal(await chosen(home(['alpha']), {}), 'login proxy.alpha:3080')
  t.equal(await chosen(home(['alpha']), { proxy: 'other:3080' }), 'login other:3080')
  t.equal(await chosen(home(['alpha', 'beta']), { cluster: 'beta' }), 'login proxy.beta:3080')
})

t.test('refusals name what to do', async (t) => {
  const several = await chosen(home(['alpha', 'beta']), { proxy: 'p:3080' })
  t.type(several, UsageError)
  t.match((several as Error).message, 'logged in to several clusters (alpha, beta): pick one with --cluster=NAME')

  const elsewhere = await chosen(home(['alpha']), { cluster: 'gamma' })
  t.type(elsewhere, WarrenError)
  t.match((elsewhere as Error).message, 'not logged in to cluster "gamma"')

  const expired = await chosen(home(['alpha'], NOW - 1), { proxy: 'p:3080' })
  t.match((expired as Error).message, /^the login of eve to cluster "alpha" expired at .*: log in again/)

  const mixed = await chosen(home(['alpha']), { proxy: 'p:3080', identity: '/nowhere' })
  t.type(mixed, UsageError)

  if (noLocalIdentity) {
    const nothing = await chosen(home([]), {})
    t.match((nothing as Error).message, /^cannot read the admin identity .* or log in with "warren login --proxy=HOST:PORT" as a user with the role editor$/)
  }
})
