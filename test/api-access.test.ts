// Every route of the auth API's table, called against a real auth server by every kind of
// caller: anonymous, a node, a proxy, the admin, a user, a host whose certificate expired,
// a node of another cluster, a proxy vouching for a user whose roles grant editor and for
// one whose roles do not, and a node and a user each claiming an editor's certificate in the
// header only a proxy is believed with. A caller the route's access level does not admit is
// refused with 401 (no valid host certificate) or 403 (not the admin, or a host of another
// role) before the handler runs: the backend is the same after all those calls. A caller it
// admits reaches the handler, whatever the handler then makes of the empty request.

import { createPrivateKey, generateKeyPairSync, randomUUID, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { AUTH_ROUTES } from '../auth/api/index.ts'
import { SqliteBackend } from '../auth/backend/sqlite.ts'
import { legacyAccess } from '../shared/access.ts'
import { x509AccessExtension } from '../shared/access-cert.ts'
import { ADMIN_PROOF_HEADER, signAdminRequest } from '../shared/admin-request-proof.ts'
import { ApiClient } from '../shared/api-client.ts'
import type { Access } from '../shared/api-router.ts'
import { ApiError } from '../shared/errors.ts'
import { joinCluster } from '../shared/join.ts'
import { ADMIN_ROUTES, USER_CERT_HEADER, USER_ROUTES } from '../shared/protocol/api.ts'
import { type CertificateExtension, createCA, createCertificate } from '../shared/x509.ts'
import { authorityOf, type IssuingCA } from './helpers/certs.ts'
import { AuthProcess } from './helpers/cluster.ts'

type Caller =
  | 'anonymous'
  | 'node'
  | 'proxy'
  | 'admin'
  | 'user'
  | 'expired host'
  | 'other cluster'
  | 'editor via proxy'
  | 'user via proxy'
  | 'node claiming an editor'
  | 'user claiming an editor'
const CALLERS: Caller[] = [
  'anonymous',
  'node',
  'proxy',
  'admin',
  'user',
  'expired host',
  'other cluster',
  'editor via proxy',
  'user via proxy',
  'node claiming an editor',
  'user claiming an editor',
]

/** Who each access level admits. */
const ADMITS: Record<Access, Caller[]> = {
  public: CALLERS,
  host: ['node', 'proxy', 'node claiming an editor'],
  node: ['node', 'node claiming an editor'],
  proxy: ['proxy'],
  admin: ['admin', 'editor via proxy'],
  user: ['admin', 'editor via proxy', 'user via proxy'],
  vouched: ['editor via proxy', 'user via proxy'],
}

/** What a refused caller gets: 403 from admin and user routes; from host routes 403 for a host of another role, else 401. */
function refusalStatus(access: Access, caller: Caller): number {
  if (access === 'admin' || access === 'user' || access === 'vouched') return 403
  return caller === 'node' || caller === 'proxy' || caller === 'node claiming an editor' ? 403 : 401
}

const HOUR = 3_600_000
const auth = new AuthProcess({ authServiceYaml: '  join_rate_limit: { burst: 1000, per_minute: 1000 }' })
/** A caller's client, and the headers it sends with a request. */
type CallerClient = { client: ApiClient; headers?: (method: string, path: string, body: unknown) => Record<string, string> }
let callers: Map<Caller, CallerClient>
t.before(async () => {
  await auth.start()
  callers = await clients()
})
t.teardown(async () => {
  await Promise.all([...(callers?.values() ?? [])].map(({ client }) => client.close()))
  await auth.stop()
})

function certificate(
  ca: IssuingCA,
  cluster: string,
  subject: { CN: string; OU: string[] },
  notAfter: Date,
  extensions: CertificateExtension[] = [],
  issuerName = `${cluster} CA`,
): { certPem: string; keyPem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const certPem = createCertificate({
    subject: { ...subject, O: cluster },
    issuer: { CN: issuerName, O: cluster },
    publicKey,
    signingKey: ca.key,
    notBefore: new Date(Date.now() - HOUR),
    notAfter,
    extKeyUsage: ['clientAuth'],
    extensions,
  })
  return { certPem, keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string }
}

/** A user certificate's DER in base64, as a proxy vouches with it. */
const vouching = (certPem: string) => ({ [USER_CERT_HEADER]: new X509Certificate(certPem).raw.toString('base64') })

/** One client per kind of caller, each presenting its certificate (or none), and the headers it sends with each request. */
async function clients(): Promise<Map<Caller, CallerClient>> {
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
  const userWith = (name: string, admin: boolean) =>
    certificate(
      userCA,
      'test-cluster',
      { CN: name, OU: ['user'] },
      new Date(Date.now() + HOUR),
      [x509AccessExtension({ ...legacyAccess(['root']), admin })],
      'test-cluster user CA',
    )
  // The editor's roles grant editor in the backend too: the auth server judges them as they are now.
  const added = await auth.ctl(['users', 'add', 'eve', '--logins=root', '--roles=editor'])
  if (added.code !== 0) throw new Error(`users add eve: ${added.stderr}`)
  const editor = userWith('eve', true)
  const plain = userWith('bob', false)
  const node = await joined('node')
  const proxy = await joined('proxy')
  const credentials: Record<Caller, { certPem: string; keyPem: string } | undefined> = {
    anonymous: undefined,
    node,
    proxy,
    admin: { certPem: admin.cert, keyPem: admin.key },
    user: certificate(userCA, 'test-cluster', { CN: 'alice', OU: ['user'] }, new Date(Date.now() + HOUR)),
    'expired host': certificate(hostCA, 'test-cluster', { CN: randomUUID(), OU: ['node'] }, new Date(Date.now() - 60_000)),
    'other cluster': certificate({ key: other.key, certPem: other.certPem }, 'other-cluster', { CN: randomUUID(), OU: ['node'] }, new Date(Date.now() + HOUR)),
    'editor via proxy': proxy,
    'user via proxy': proxy,
    'node claiming an editor': node,
    'user claiming an editor': plain,
  }
  // The editor signs its requests, as warrenctl does; those claiming to be the editor cannot.
  const editorKey = createPrivateKey(editor.keyPem)
  const signedByEditor = (method: string, path: string, body: unknown) => ({
    ...vouching(editor.certPem),
    [ADMIN_PROOF_HEADER]: signAdminRequest(editorKey, 'test-cluster', method, path, body),
  })
  const headers: Partial<Record<Caller, (method: string, path: string, body: unknown) => Record<string, string>>> = {
    'editor via proxy': signedByEditor,
    'user via proxy': () => vouching(plain.certPem),
    'node claiming an editor': () => vouching(editor.certPem),
    'user claiming an editor': () => vouching(editor.certPem),
  }
  return new Map(
    CALLERS.map((caller) => {
      const given = credentials[caller]
      const client = new ApiClient({ server: auth.address, caPems, ...(given ? { certPem: given.certPem, keyPem: given.keyPem } : {}) })
      return [caller, { client, headers: headers[caller] }]
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
async function callRoute({ client, headers }: CallerClient, route: string): Promise<{ status: number; error?: string }> {
  const [method, pattern] = route.split(' ') as ['GET' | 'POST' | 'DELETE', string]
  const path = pattern.replace(/:[a-z_]+/g, 'x')
  const body = method === 'POST' ? {} : undefined
  try {
    await client.request(method, path, body, { headers: headers?.(method, path, body) })
    return { status: 200 }
  } catch (error) {
    if (error instanceof ApiError) return { status: error.status, error: error.message }
    throw error
  }
}

const ACCESS_REFUSAL = /^this endpoint (needs a valid (host|admin|user) certificate|is for (nodes|proxies))/

t.test('every route states an access level the matrix knows', async (t) => {
  const routes = Object.entries(AUTH_ROUTES)
  t.ok(routes.length >= 29, `${routes.length} routes`)
  for (const [route, spec] of routes) t.ok(spec.access in ADMITS, `${route}: ${spec.access}`)
  t.same([...new Set(routes.map(([, spec]) => spec.access))].sort(), ['admin', 'host', 'node', 'proxy', 'public', 'user', 'vouched'], 'every level is in use')
})

t.test("the routes a proxy carries for editors are the table's admin routes", async (t) => {
  const admin = Object.entries(AUTH_ROUTES).filter(([, spec]) => spec.access === 'admin')
  t.same([...ADMIN_ROUTES].sort(), admin.map(([route]) => route).sort())
  const user = Object.entries(AUTH_ROUTES).filter(([, spec]) => spec.access === 'user')
  t.same([...USER_ROUTES].sort(), user.map(([route]) => route).sort(), 'and those it carries for any user are its user routes')
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
