// Administration from any machine: a person whose roles grant editor logs in with warren
// login in a home of its own (no data dir, no admin identity there), and warrenctl acts as
// that login through the proxy, which vouches for the user to the auth server; the auth
// server logs each action with the user's name. A user with only the role access is
// refused, and so is the header naming an editor from anyone but a proxy. The local admin
// identity keeps working, and --help never acts.

import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { type AdminIdentityFile, adminIdentityPath } from '../auth/admin-identity.ts'
import { ADMIN_PROOF_HEADER, signAdminRequest } from '../shared/admin-request-proof.ts'
import { ApiClient } from '../shared/api-client.ts'
import { ApiError } from '../shared/errors.ts'
import { loadIdentity } from '../shared/identity-store.ts'
import type { TokenList } from '../shared/protocol/admin.ts'
import { USER_CERT_HEADER } from '../shared/protocol/api.ts'
import { AuthProcess, JSON_LOGS, ProxyProcess, ROOT, run, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'
import { signUp } from './helpers/people.ts'
import { until } from './helpers/until.ts'

t.setTimeout(240_000)

const PASSWORD = 'a long enough passphrase'
const auth = await new AuthProcess({ authServiceYaml: JSON_LOGS }).start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
t.teardown(() => proxy.stop())
const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=pi-lab'])
t.teardown(() => node.stop())
await waitForNode(auth, 'pi-lab')

/** Another machine: a home of its own, where warren login writes, and no auth server's data dir. */
function machine(): Record<string, string> {
  const home = tempDir('warren-laptop-')
  return { HOME: home, WARREN_HOME: join(home, '.warren') }
}

/** Invites `name` with `roles` and accepts the invitation on `env`'s machine. */
async function invited(name: string, roles: string, env: Record<string, string>): Promise<void> {
  const added = await auth.ctl(['users', 'add', name, `--logins=${testLogin()}`, `--roles=${roles}`])
  if (added.code !== 0) throw new Error(added.stderr)
  const token = /--invite=(\S+)/.exec(added.stdout)![1]
  const signed = await signUp([`--proxy=${proxy.web}`, `--invite=${token}`, `--ca-pin=${pin}`], env, PASSWORD)
  if (signed.code !== 0) throw new Error(signed.stderr)
}

const laptop = machine()
const other = machine()
await invited('eve', 'access,editor', laptop)
await invited('bob', 'access', other)

const warrenctl = (env: Record<string, string>, args: string[]) => run(join(ROOT, 'cli/warrenctl.ts'), args, { env })
const tokenCount = async () => (await auth.api<TokenList>('GET', '/v1/tokens')).tokens.length
/** The auth server's audit entries for `user`'s admin requests. */
const audited = (user: string, route?: string) =>
  auth.daemon.logEntries().filter((entry) => entry.user === user && entry.route !== undefined && (route === undefined || entry.route === route))
const credential = (env: Record<string, string>, file: string) => readFileSync(join(env.WARREN_HOME, 'test-cluster', file), 'utf8')

t.test('an editor administers from another machine through the proxy, and each action is logged with its name', async (t) => {
  const nodes = await warrenctl(laptop, ['nodes', 'ls'])
  t.equal(nodes.code, 0, nodes.stderr)
  t.match(nodes.stdout, /pi-lab/)

  const before = await tokenCount()
  const added = await warrenctl(laptop, ['tokens', 'add', '--type=node', `--proxy=${proxy.web}`])
  t.equal(added.code, 0, added.stderr)
  const token = /The invite token: (\S+)/.exec(added.stdout)?.[1]
  t.ok(token, added.stdout)
  t.equal(await tokenCount(), before + 1, 'the token is in the backend')

  const users = await warrenctl(laptop, ['users', 'ls'])
  t.equal(users.code, 0, users.stderr)
  t.match(users.stdout, /^eve\b/m)
  t.match(users.stdout, /^bob\b/m)

  for (const route of ['GET /v1/nodes', 'POST /v1/tokens', 'GET /v1/users']) {
    const entries = audited('eve', route)
    t.equal(entries.length > 0, true, `${route} is logged with user eve`)
    t.equal(entries[0]?.level, 'info')
    t.equal(typeof entries[0]?.proxy, 'string', 'and the proxy that vouched for it')
  }
  t.notOk(auth.daemon.stderr.includes(token!), 'the token is not in the log')
})

t.test('a user whose roles do not grant editor is refused, and nothing changes', async (t) => {
  const before = await tokenCount()
  const refusal = /this endpoint needs a valid admin certificate of cluster "test-cluster" \(user "bob": its roles do not grant editor\)/
  const nodes = await warrenctl(other, ['nodes', 'ls'])
  t.equal(nodes.code, 1)
  t.match(nodes.stderr, refusal)
  const added = await warrenctl(other, ['tokens', 'add', '--type=node'])
  t.equal(added.code, 1)
  t.match(added.stderr, refusal)
  t.equal(await tokenCount(), before)
  t.equal(audited('bob', 'POST /v1/tokens')[0]?.level, 'warn', 'the refusal is logged with the user')
})

t.test('the header naming an editor counts only from a proxy', async (t) => {
  const before = await tokenCount()
  const header = { [USER_CERT_HEADER]: new X509Certificate(credential(laptop, 'tls.crt')).raw.toString('base64') }
  const caPems = [credential(other, 'host_ca.pem')]
  const bobsCert = { certPem: credential(other, 'tls.crt'), keyPem: credential(other, 'tls.key') }
  const tryAs = async (server: string, cert: { certPem: string; keyPem: string } | object) => {
    const client = new ApiClient({ server, caPems, ...cert })
    try {
      await client.request('POST', '/v1/tokens', { roles: 'node' }, { headers: header })
      return { status: 200, message: '' }
    } catch (error) {
      if (!(error instanceof ApiError)) throw error
      return { status: error.status, message: error.message }
    } finally {
      await client.close()
    }
  }
  const anonymous = await tryAs(auth.address, {})
  t.equal(anonymous.status, 403, 'anonymous, to the auth server')
  t.match(anonymous.message, /needs a valid admin certificate/)
  const user = await tryAs(auth.address, bobsCert)
  t.equal(user.status, 403, "a user's own certificate, to the auth server")
  t.match(user.message, /needs a valid admin certificate/)
  const throughProxy = await tryAs(proxy.web, bobsCert)
  t.equal(throughProxy.status, 403, 'through the proxy, which vouches for the user it verified, not for the header')
  t.match(throughProxy.message, /user "bob": its roles do not grant editor/)
  t.equal(await tokenCount(), before)
  t.equal(audited('eve', 'POST /v1/tokens').length, 1, 'nothing more was done as eve')
})

t.test('the local admin identity keeps working, and --help never acts', async (t) => {
  const local = await warrenctl(laptop, ['users', 'ls', `--data-dir=${auth.dataDir}`])
  t.equal(local.code, 0, local.stderr)
  t.match(local.stdout, /^eve\b/m)
  t.equal(audited('eve', 'GET /v1/users').length, 1, 'the admin identity, not the login, made that request')

  const before = await tokenCount()
  const help = await warrenctl(laptop, ['tokens', 'add', '--type=node', '--help'])
  t.equal(help.code, 0, help.stderr)
  t.match(help.stdout, /^Usage: warrenctl tokens add /)
  t.match(help.stdout, /--proxy=HOST:PORT/)
  t.equal(await tokenCount(), before)
  t.equal(audited('eve', 'POST /v1/tokens').length, 1)

  const unknown = await warrenctl(laptop, ['nodes', 'ls', '--cluster=elsewhere'])
  t.equal(unknown.code, 1)
  t.match(unknown.stderr, /not logged in to cluster "elsewhere"/)
})

t.test("a proxy's stolen keys and an editor's certificate, which passes the proxy, do not administer the cluster", async (t) => {
  const stolen = loadIdentity(proxy.dataDir, 'proxy')!
  const asProxy = new ApiClient({ server: auth.address, caPems: stolen.hostCAPems, certPem: stolen.tlsCertPem, keyPem: stolen.tlsKeyPem })
  t.teardown(() => asProxy.close())
  const vouching = { [USER_CERT_HEADER]: new X509Certificate(credential(laptop, 'tls.crt')).raw.toString('base64') }
  const evesKey = createPrivateKey(credential(laptop, 'tls.key'))
  const attackersKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
  const send = async (body: object, proof?: string) => {
    try {
      await asProxy.request('POST', '/v1/tokens', body, { headers: { ...vouching, ...(proof ? { [ADMIN_PROOF_HEADER]: proof } : {}) } })
      return { status: 200, message: '' }
    } catch (error) {
      if (!(error instanceof ApiError)) throw error
      return { status: error.status, message: error.message }
    }
  }
  const before = await tokenCount()
  const proxyTokens = async () => (await auth.api<TokenList>('GET', '/v1/tokens')).tokens.filter((token) => token.roles.includes('proxy')).length
  const proxyTokensBefore = await proxyTokens()
  const asked = { roles: 'proxy' }
  t.match(await send(asked), { status: 403, message: /user "eve": the request is not signed by the user's key/ }, 'unsigned')
  t.match(
    await send(asked, signAdminRequest(attackersKey, 'test-cluster', 'POST', '/v1/tokens', asked)),
    { status: 403, message: /not signed by the key of the user's certificate/ },
    'signed by another key',
  )
  t.match(
    await send(asked, signAdminRequest(evesKey, 'test-cluster', 'GET', '/v1/tokens', undefined)),
    { status: 403, message: /not signed by the key/ },
    "eve's signature of another request",
  )
  // eve's own signed request for a node token, as the proxy saw it pass: refused under another
  // body, and, its nonce once used, not taken again even as it was.
  const evesBody = { roles: 'node' }
  const evesProof = signAdminRequest(evesKey, 'test-cluster', 'POST', '/v1/tokens', evesBody)
  t.match(await send(asked, evesProof), { status: 400, message: /body is not the one the user signed/ }, 'her signature over another body')
  t.match(await send(evesBody, evesProof), { status: 403, message: /used before/ }, 'her request, once its nonce was seen, sent again')
  t.equal(await tokenCount(), before, 'no token was made')
  t.equal(await proxyTokens(), proxyTokensBefore, 'no proxy token above all')
  // eve herself, through the real proxy, still administers.
  const genuine = await warrenctl(laptop, ['tokens', 'add', '--type=node'])
  t.equal(genuine.code, 0, genuine.stderr)
  t.equal(await tokenCount(), before + 1)
})

t.test("a proxy's stolen keys that rewrite the status answer cannot make warrenctl print a CA pin of theirs", async (t) => {
  // Where the proxy stands, with its stolen certificate: it carries the editor's requests on
  // with an authority of its own (here the admin identity) and makes up the status answer.
  const forged = `sha256:${'ab'.repeat(32)}`
  const stolen = loadIdentity(proxy.dataDir, 'proxy')!
  const admin = JSON.parse(readFileSync(adminIdentityPath(auth.dataDir), 'utf8')) as AdminIdentityFile
  const upstream = new ApiClient({ server: auth.address, caPems: admin.host_ca_certs, certPem: admin.cert, keyPem: admin.key, authServer: true })
  t.teardown(() => upstream.close())
  const relay = createHttpsServer({ cert: stolen.tlsCertPem, key: stolen.tlsKeyPem }, async (req, res) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const body = chunks.length > 0 ? JSON.parse(Buffer.concat(chunks).toString()) : undefined
    const path = req.url!.replace(/^\/web\/api/, '')
    const answer = await upstream.request<Record<string, unknown>>(req.method as 'GET' | 'POST', path, body)
    const made = path === '/v1/status' ? { ...answer, host_ca: { ...(answer.host_ca as object), pins: [forged] } } : answer
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(made))
  })
  relay.listen(0, '127.0.0.1')
  await once(relay, 'listening')
  t.teardown(() => relay.close())
  const address = `127.0.0.1:${(relay.address() as AddressInfo).port}`
  const added = await warrenctl(laptop, ['tokens', 'add', '--type=node', `--proxy=${address}`])
  t.equal(added.code, 0, added.stderr)
  t.match(added.stdout, `--ca-pin=${pin} `, 'the join command pins the CA this login trusts')
  t.notMatch(added.stdout, forged, 'and not the one the proxy wrote')
  const invited = await warrenctl(laptop, ['users', 'add', 'mallory-target', '--logins=pi', `--proxy=${address}`])
  t.equal(invited.code, 0, invited.stderr)
  t.match(invited.stdout, `should read ${pin}`, 'so does the invitation')
  t.notMatch(invited.stdout, forged)
})

t.test('a role that no longer grants editor serves no admin request, whatever certificate the user holds', async (t) => {
  const role = (admin: boolean) => `kind: role
version: v1
metadata:
  name: night-shift
spec:
  allow:
    admin: ${admin}
`
  await auth.create(role(true))
  const desk = machine()
  await invited('olga', 'access,night-shift', desk)
  const granted = await warrenctl(desk, ['users', 'ls'])
  t.equal(granted.code, 0, granted.stderr)
  t.match(granted.stdout, /^olga\b/m, 'the role grants editor: she administers')

  await auth.create(role(false))
  const before = await tokenCount()
  const added = await warrenctl(desk, ['tokens', 'add', '--type=node'])
  t.equal(added.code, 1, 'her certificate, issued while the role granted editor, no longer does')
  t.match(added.stderr, /\(user "olga": its roles do not grant editor\)/)
  t.equal(await tokenCount(), before, 'no token made')
})

t.test('an editor removed is refused at once', async (t) => {
  t.equal((await auth.ctl(['users', 'rm', 'eve'])).code, 0)
  await until('the removal to apply', async () => (await warrenctl(laptop, ['users', 'ls'])).code === 1, { timeoutMs: 20_000 })
  const refused = await warrenctl(laptop, ['users', 'ls'])
  t.equal(refused.code, 1)
  t.match(refused.stderr, /user "eve" issued before .* locked: the user was removed/)
})
