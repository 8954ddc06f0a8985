// Which credentials warren ls and warren ssh use: --identity; else $WARREN_HOME when
// `auth sign` wrote there; else the one login of warren login, or the one --cluster names.

import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { UsageError, WarrenError } from '../shared/errors.ts'
import { PROFILE_FILES, type Profile } from './profile.ts'
import { checkedNodes, credentialsDir } from './reachable.ts'

/** A WARREN_HOME with a login to each cluster named, and credentials of its own when `signed`. */
function home(clusters: string[], signed = false): string {
  const dir = mkdtempSync(join(tmpdir(), 'warren-user-home-'))
  const profile = (cluster: string, roles?: string[]): string =>
    JSON.stringify({ cluster_name: cluster, user: 'alice', logins: ['pi'], proxies: ['proxy:3080'], valid_before: Date.now() + 3_600_000, roles } satisfies Profile)
  for (const cluster of clusters) {
    mkdirSync(join(dir, cluster))
    writeFileSync(join(dir, cluster, PROFILE_FILES.profile), profile(cluster, ['access']))
  }
  if (signed) writeFileSync(join(dir, PROFILE_FILES.profile), profile('signed'))
  return dir
}

function chosen(dir: string, flags: { identity?: string; cluster?: string }): string | Error {
  const before = process.env.WARREN_HOME
  process.env.WARREN_HOME = dir
  try {
    return credentialsDir(flags)
  } catch (error) {
    return error as Error
  } finally {
    if (before === undefined) delete process.env.WARREN_HOME
    else process.env.WARREN_HOME = before
  }
}

t.test('--identity wins, then credentials in WARREN_HOME itself, then the login', async (t) => {
  const both = home(['alpha'], true)
  t.equal(chosen(both, { identity: '/some/dir' }), '/some/dir')
  t.equal(chosen(both, {}), both, 'what auth sign wrote there')
  t.equal(chosen(both, { cluster: 'alpha' }), join(both, 'alpha'), '--cluster picks the login')
  const one = home(['alpha'])
  t.equal(chosen(one, {}), join(one, 'alpha'), 'the only login')
})

t.test('several logins need --cluster; none, or an unknown cluster, is a failure that says what to do', async (t) => {
  const several = home(['alpha', 'beta'])
  const ambiguous = chosen(several, {})
  t.ok(ambiguous instanceof UsageError)
  t.equal((ambiguous as Error).message, 'logged in to several clusters (alpha, beta): pick one with --cluster=NAME')
  t.equal(chosen(several, { cluster: 'beta' }), join(several, 'beta'))
  const unknown = chosen(several, { cluster: 'gamma' })
  t.ok(unknown instanceof WarrenError && !(unknown instanceof UsageError))
  t.match((unknown as Error).message, /^not logged in to cluster "gamma": log in with "warren login --proxy=HOST:PORT"/)
  t.match((chosen(home([]), {}) as Error).message, /^not logged in to any cluster/)
})

t.test("a proxy's list of nodes is taken only with host IDs and names of their shapes: they reach ssh's command line", async (t) => {
  const node = { host_id: '0b6a2c1e-4f7d-4e2a-9c3b-5d8e7f6a1b2c', nodename: 'pi-1', addr: '', tunnel: true, labels: {}, last_seen: 0 }
  t.same(checkedNodes([node]), [node], 'a node as the auth server names it')
  for (const [what, forged] of [
    ['a host ID with a command in it', { ...node, host_id: 'x$(id>/tmp/pwned)' }],
    ['a name with a command in it', { ...node, nodename: 'pi`id`' }],
    ['a name with a space and an option', { ...node, nodename: 'pi -oProxyCommand=sh' }],
    ['no host ID', { ...node, host_id: undefined as unknown as string }],
  ] as const) {
    t.throws(() => checkedNodes([node, forged]), { message: /no node of a cluster/ }, what)
  }
})
