// Every route of the auth API's table, called against a real auth server by every kind of
// caller: anonymous, a node, a proxy, the admin, a user, a host whose certificate expired,
// and a node of another cluster. A caller the route's access level does not admit is refused
// with 401 (no valid host certificate) or 403 (not the admin, or a host of another role)
// before the handler runs: the backend is the same after all those calls. A caller it
// admits reaches the handler, whatever the handler then makes of the empty request.

import { generateKeyPairSync, randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { AUTH_ROUTES } from '../auth/api/index.ts'
import { SqliteBackend } from '../auth/backend/sqlite.ts'
import { ApiClient } from '../shared/api-client.ts'
import type { Access } from '../shared/api-router.ts'
import { ApiError } from '../shared/errors.ts'
import { joinCluster } from '../shared/join.ts'
import { createCA, createCertificate } from '../shared/x509.ts'
import { authorityOf, type IssuingCA } from './helpers/certs.ts'
import { AuthProcess } from './helpers/cluster.ts'

type Caller = 'anonymous' | 'node' | 'proxy' | 'admin' | 'user' | 'expired host' | 'other cluster'
const CALLERS: Caller[] = ['anonymous', 'node', 'proxy', 'admin', 'user', 'expired host', 'other cluster']

/** Who each access level admits. */
const ADMITS: Record<Access, Caller[]> = {
  public: CALLERS,
  host: ['node', 'proxy'],
  node: ['node'],
  proxy: ['proxy'],
  admin: ['admin'],
}

/** What a refused caller gets: 403 from admin routes; from host routes 403 for a host of another role, else 401. */
function refusalStatus(access: Access, caller: Caller): number {
  if (access === 'admin') return 403
  return caller === 'node' || caller === 'proxy' ? 403 : 401
}

const HOUR = 3_600_000
const auth = new AuthProcess({ authServiceYaml: '  join_rate_limit: { burst: 1000, per_minute: 1000 }' })
let callers: Map<Caller, ApiClient>
t.before(async () => {
  await auth.start()
  callers = await clients()
})
t.teardown(async () => {
  await Promise.all([...(callers?.values() ?? [])].map((client) => client.close()))
  await auth.stop()
})

function certificate(ca: IssuingCA, cluster: string, subject: { CN: string; OU: string[] }, notAfter: Date): { certPem: string; keyPem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const certPem = createCertificate({
    subject: { ...subject, O: cluster },
    issuer: { CN: `${cluster} CA`, O: cluster },
    publicKey,
    signingKey: ca.key,
    notBefore: new Date(Date.now() - HOUR),
    notAfter,
    extKeyUsage: ['clientAuth'],
  })
  return { certPem, keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string }
}

/** One client per kind of caller, each presenting its certificate (or none). */
async function clients(): Promise<Map<Caller, ApiClient>> {
  const admin = JSON.parse(readFileSync(auth.identityPath, 'utf8'))
  const caPems: string[] = admin.host_ca_certs
  const pin = await auth.pin()
  const joined = async (role: 'node' | 'proxy') => {
    const token = await auth.token(['tokens', 'add', `--type=${role}`])
    const identity = await joinCluster({ authServer: auth.address, token, caPins: [pin], nodename: `matrix-${role}`, roles: [role], warn: () => {} })
    return { certPem: identity.tlsCertPem, keyPem: identity.tlsKeyPem }
  }
  const hostCA = await authorityOf(auth, 'host')
  const userCA = await authorityOf(auth, 'user')
  const other = createCA('other host CA', 'other-cluster')
  const credentials: Record<Caller, { certPem: string; keyPem: string } | undefined> = {
    anonymous: undefined,
    node: await joined('node'),
    proxy: await joined('proxy'),
    admin: { certPem: admin.cert, keyPem: admin.key },
    user: certificate(userCA, 'test-cluster', { CN: 'alice', OU: ['user'] }, new Date(Date.now() + HOUR)),
    'expired host': certificate(hostCA, 'test-cluster', { CN: randomUUID(), OU: ['node'] }, new Date(Date.now() - 60_000)),
    'other cluster': certificate({ key: other.key, certPem: other.certPem }, 'other-cluster', { CN: randomUUID(), OU: ['node'] }, new Date(Date.now() + HOUR)),
  }
  return new Map(
    CALLERS.map((caller) => {
      const given = credentials[caller]
      return [caller, new ApiClient({ server: auth.address, caPems, ...(given ? { certPem: given.certPem, keyPem: given.keyPem } : {}) })]
    }),
  )
}

/** The backend as it is on disk: every key and its revision. */
async function backendState(): Promise<string[]> {
  const backend = SqliteBackend.open(join(auth.dataDir, 'backend.db'))
  try {
    return (await backend.list('/')).map((item) => `${item.key}@${item.revision}`)
  } finally {
    await backend.close()
  }
}

/** Calls `route` with placeholder path parameters and an empty body: the status, and the error if any. */
async function callRoute(client: ApiClient, route: string): Promise<{ status: number; error?: string }> {
  const [method, path] = route.split(' ') as ['GET' | 'POST' | 'DELETE', string]
  try {
    await client.request(method, path.replace(/:[a-z_]+/g, 'x'), method === 'POST' ? {} : undefined)
    return { status: 200 }
  } catch (error) {
    if (error instanceof ApiError) return { status: error.status, error: error.message }
    throw error
  }
}

const ACCESS_REFUSAL = /^this endpoint (needs a valid (host|admin) certificate|is for (nodes|proxies))/

t.test('every route states an access level the matrix knows', async (t) => {
  const routes = Object.entries(AUTH_ROUTES)
  t.ok(routes.length >= 29, `${routes.length} routes`)
  for (const [route, spec] of routes) t.ok(spec.access in ADMITS, `${route}: ${spec.access}`)
  t.same([...new Set(routes.map(([, spec]) => spec.access))].sort(), ['admin', 'host', 'node', 'proxy', 'public'], 'every level is in use')
})

t.test('callers a route does not admit are refused before its handler runs', async (t) => {
  const before = await backendState()
  let refused = 0
  for (const [route, { access }] of Object.entries(AUTH_ROUTES)) {
    for (const caller of CALLERS.filter((c) => !ADMITS[access].includes(c))) {
      const answer = await callRoute(callers.get(caller)!, route)
      t.equal(answer.status, refusalStatus(access, caller), `${route} (${access}) refuses ${caller}: ${answer.error}`)
      t.match(answer.error, ACCESS_REFUSAL)
      refused++
    }
  }
  t.ok(refused > 100, `${refused} refusals`)
  t.same(await backendState(), before, 'the backend is unchanged: no handler ran')
})

t.test('callers a route admits reach its handler', async (t) => {
  for (const [route, { access }] of Object.entries(AUTH_ROUTES)) {
    for (const caller of ADMITS[access]) {
      const answer = await callRoute(callers.get(caller)!, route)
      t.not(answer.status, 401, `${route} (${access}) admits ${caller}: ${answer.status} ${answer.error ?? ''}`)
      t.notMatch(answer.error ?? '', ACCESS_REFUSAL)
      t.not(answer.status, 500, 'and answers it')
    }
  }
})
