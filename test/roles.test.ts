// Roles decide who reaches which devices, and they are judged in two places: the proxy
// refuses a node or a forwarded port the user's roles do not allow before it opens any
// stream, and the node judges the roles carried in the SSH certificate against its own
// labels, so that a stream forged past every proxy (here: a direct node dialled with a
// proxy's own certificate) meets the same refusal. Real processes, real OpenSSH, user
// credentials from `warrenctl auth sign`, which issues what a login issues.

import { generateKeyPairSync, X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { cpSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { NO_CERTIFICATE } from '../agent/port-access.ts'
import { PROFILE_FILES } from '../cli/profile.ts'
import { identityDir } from '../shared/identity-store.ts'
import { signPortRequest } from '../shared/port-request-proof.ts'
import type { AuditEvent } from '../shared/protocol/audit.ts'
import { CLUSTER_SERVER_NAME, USER_ALPN } from '../shared/protocol/tunnel.ts'
import { createSshCertificate, parseSshCertificate } from '../shared/ssh-cert.ts'
import { readOpenSshPrivateKey } from '../shared/ssh-key-file.ts'
import { AuthProcess, type Daemon, JSON_LOGS, openssh, ProxyProcess, ROOT, run, startNode, tempDir, testLogin, waitForNode, warren } from './helpers/cluster.ts'
import { lineDial } from './helpers/line-dial.ts'
import { until } from './helpers/until.ts'

const FORGED_DIAL = join(import.meta.dirname, 'helpers', 'forged-dial.ts')
const LAB_ROLE = `kind: role
version: v1
metadata:
  name: lab
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels:
      env: lab
    ports: ['*']
  deny:
    ports: [db]
  options:
    max_session_ttl: 2h
`

const auth = await new AuthProcess().start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, extraYaml: JSON_LOGS }).start()
t.teardown(() => proxy.stop())

/** An echo server that counts the connections it accepted. */
async function countingEcho(): Promise<{ port: number; accepted: () => number }> {
  let accepted = 0
  const server = createServer((socket) => {
    accepted++
    socket.pipe(socket)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  return { port: (server.address() as { port: number }).port, accepted: () => accepted }
}
const webui = await countingEcho()
const db = await countingEcho()

/** A node labelled env=`env`, declaring webui and db; joined through the proxy (a tunnel) or to the auth server (direct). */
async function node(name: string, env: string, direct = false): Promise<{ daemon: Daemon; listing: string }> {
  const dir = tempDir()
  const config = join(dir, 'warren.yaml')
  const ports = `[{ name: webui, addr: "127.0.0.1:${webui.port}" }, { name: db, addr: "127.0.0.1:${db.port}" }]`
  writeFileSync(
    config,
    ['version: v1', `data_dir: ${dir}`, `labels: { env: ${env} }`, 'ssh_service:', '  listen_addr: 127.0.0.1:0', `  forward_ports: ${ports}`, JSON_LOGS].join('\n'),
  )
  const joinAt = direct ? auth.address : proxy.web
  const daemon = startNode([`--config=${config}`, `--auth-server=${joinAt}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, `--nodename=${name}`])
  t.teardown(() => daemon.stop())
  return { daemon, listing: await waitForNode(auth, name) }
}
await node('lab-1', 'lab')
await node('prod-1', 'prod')
const direct = await node('prod-direct', 'prod', true)
const directPort = Number(/^prod-direct\s+\S+\s+127\.0\.0\.1:(\d+)\s/m.exec(direct.listing)?.[1])

/** warrenctl with standard input. */
const ctlWithInput = (args: string[], input: string) => run(join(ROOT, 'cli/warrenctl.ts'), [...args, `--data-dir=${auth.dataDir}`], { input })

/** Adds `name` with `roles` and signs OpenSSH credentials for it (asking for 8h). */
async function user(name: string, roles: string): Promise<string> {
  const added = await auth.ctl(['users', 'add', name, `--logins=${testLogin()}`, `--roles=${roles}`])
  if (added.code !== 0) throw new Error(`users add: ${added.stderr}`)
  const dir = tempDir('warren-user-')
  const signed = await auth.ctl(['auth', 'sign', `--user=${name}`, '--ttl=8h', `--out=${dir}`, '--format=openssh', `--proxy=${proxy.web}`])
  if (signed.code !== 0) throw new Error(`auth sign: ${signed.stderr}`)
  return dir
}

const PROD_WEB_ROLE = `kind: role
version: v1
metadata:
  name: prod-web
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels:
      env: prod
    ports: [webui]
`

const misspelt = await ctlWithInput(['create', '-f', '-'], LAB_ROLE.replace('node_labels', 'node_label'))
const created = await ctlWithInput(['create', '-f', '-'], LAB_ROLE)
const alice = await user('alice', 'lab')
const bob = await user('bob', 'access')
const prodWeb = await ctlWithInput(['create', '-f', '-'], PROD_WEB_ROLE)
if (prodWeb.code !== 0) throw new Error(`create role prod-web: ${prodWeb.stderr}`)
const carol = await user('carol', 'prod-web')

t.test('roles are created from YAML (standard input too), listed, and checked field by field', async (t) => {
  t.equal(misspelt.code, 1)
  t.equal(misspelt.stderr, 'ERROR: spec.allow: unknown key "node_label": did you mean node_labels?\n')
  t.equal(created.stdout, 'role "lab" has been created\n', created.stderr)
  const listed = JSON.parse((await auth.ctl(['get', 'roles', '--format=json'])).stdout) as { metadata: { name: string }; spec: unknown }[]
  t.same(
    listed.map((role) => role.metadata.name),
    ['access', 'editor', 'lab', 'prod-web'],
  )
  t.same(listed[2].spec, { allow: { logins: ['{{internal.logins}}'], node_labels: { env: ['lab'] }, ports: ['*'] }, deny: { ports: ['db'] }, options: { max_session_ttl: '2h' } })
  const unknown = await auth.ctl(['users', 'add', 'mallory', `--logins=${testLogin()}`, '--roles=lab,labs'])
  t.equal(unknown.code, 1)
  t.match(unknown.stderr, /no role "labs"/)
  t.notMatch((await auth.ctl(['users', 'ls'])).stdout, /mallory/, 'the user was not added')
})

t.test("max_session_ttl caps both certificates' lifetime", async (t) => {
  const tls = new X509Certificate(readFileSync(join(alice, PROFILE_FILES.tlsCert)))
  const ssh = parseSshCertificate(readFileSync(join(alice, PROFILE_FILES.sshCert), 'utf8'))
  // Issued valid from a minute back (clock skew) to 2h ahead, though 8h were asked for.
  const expected = 2 * 3_600_000 + 60_000
  t.ok(Math.abs(tls.validToDate.getTime() - tls.validFromDate.getTime() - expected) <= 1000, `TLS: ${tls.validFrom} to ${tls.validTo}`)
  t.ok(Math.abs(ssh.validBefore.getTime() - ssh.validAfter.getTime() - expected) <= 1000, `SSH: ${ssh.validAfter.toISOString()} to ${ssh.validBefore.toISOString()}`)
  t.same(ssh.principals, [testLogin()], "the SSH principals are the logins the roles allow: the user's own")
  const bobs = new X509Certificate(readFileSync(join(bob, PROFILE_FILES.tlsCert)))
  t.ok(Math.abs(bobs.validToDate.getTime() - bobs.validFromDate.getTime() - (8 * 3_600_000 + 60_000)) <= 1000, 'access alone lets 8h through (its default cap is 12h)')
})

t.test('a role for env=lab reaches the lab node; the prod node is refused at the proxy', async (t) => {
  const lab = await openssh(alice, [`${testLogin()}@lab-1`, 'echo reached'])
  t.equal(lab.stdout, 'reached\n', lab.stderr)
  for (const target of ['prod-1', 'prod-direct']) {
    const prod = await openssh(alice, [`${testLogin()}@${target}`, 'echo reached'])
    t.equal(prod.code, 255, `${target}: refused`)
    t.equal(prod.stdout, '')
    t.match(prod.stderr, `cannot reach node "${target}": access to node "${target}" denied: the user's roles do not allow this node`)
    const logged = proxy.daemon.logEntries().filter((entry) => entry.access_denied === true && entry.node === target && entry.user === 'alice')
    t.equal(logged.length, 1, `${target}: the proxy logs the refusal`)
  }
  const control = await openssh(bob, [`${testLogin()}@prod-1`, 'echo reached'])
  t.equal(control.stdout, 'reached\n', `the built-in role access reaches the prod node (${control.stderr.trim()})`)
})

/** The audit log's port_forward events of alice. */
async function portEvents(): Promise<AuditEvent[]> {
  return (await auth.api<{ events: AuditEvent[] }>('GET', '/v1/audit/events?type=port_forward&user=alice')).events
}

t.test('a denied port is refused at the proxy, before the node connects anything; the one allowed is in the audit log', async (t) => {
  const allowed = await warren(['proxy', 'port', `--identity=${alice}`, 'lab-1', 'webui'], { input: 'hello webui' })
  t.equal(allowed.stdout, 'hello webui', allowed.stderr)
  const opened = await until('the port in the audit log', async () => (await portEvents()).length > 0).then(portEvents)
  t.match(opened, [{ type: 'port_forward', user: 'alice', node: 'lab-1', name: 'webui', client_addr: '127.0.0.1', session_id: null, login: null }], 'the node records it')
  const before = db.accepted()
  const denied = await warren(['proxy', 'port', `--identity=${alice}`, 'lab-1', 'db'], { input: 'hello db' })
  t.not(denied.code, 0)
  t.equal(denied.stdout, '')
  t.match(denied.stderr, `access to port "db" of node "lab-1" denied: the user's roles deny the port "db"`)
  t.equal(db.accepted(), before, 'nothing connected to the db port')
  t.same(
    (await portEvents()).map((event) => event.name),
    ['webui'],
    'and records nothing of the refused one',
  )
  const control = await warren(['proxy', 'port', `--identity=${bob}`, 'lab-1', 'db'], { input: 'hello db' })
  t.equal(control.stdout, 'hello db', `the built-in role access reaches it (${control.stderr.trim()})`)
})

t.test('a stream forged past the proxy meets the same refusal at the node', async (t) => {
  const proxyIdentity = identityDir(proxy.dataDir, 'proxy')
  // The forged ProxyCommand writes no known_hosts.d file: the login's known_hosts stands in.
  const forgedFor = (dir: string) => [
    '-o',
    `ProxyCommand=${process.execPath} ${FORGED_DIAL} 127.0.0.1 ${directPort} ${join(proxyIdentity, 'host.crt')} ${join(proxyIdentity, 'host.key')}`,
    '-o',
    `UserKnownHostsFile=${join(dir, PROFILE_FILES.knownHosts)}`,
  ]
  const control = await openssh(bob, [...forgedFor(bob), `${testLogin()}@prod-direct`, 'echo reached'])
  t.equal(control.stdout, 'reached\n', `the forged stream does reach the node's SSH server (${control.stderr.trim()})`)
  const refused = await openssh(alice, [...forgedFor(alice), `${testLogin()}@prod-direct`, 'echo reached'])
  t.equal(refused.code, 255)
  t.equal(refused.stdout, '')
  t.match(refused.stderr, /Permission denied/)
  const logged = direct.daemon.logEntries().filter((entry) => entry.access_denied === true && entry.key_id === 'alice')
  t.ok(logged.length >= 1, 'the node logs the refusal by its roles')
})

/** The OpenSSH certificate line in a user's credentials. */
const sshCertOf = (dir: string) => readFileSync(join(dir, PROFILE_FILES.sshCert), 'utf8').trim()
/** A request for `port` of prod-direct signed with the SSH key in `dir`, as warren proxy port signs it. */
const proofOf = (dir: string, port: string) =>
  signPortRequest(readOpenSshPrivateKey(readFileSync(join(dir, PROFILE_FILES.sshKey), 'utf8')), { cluster: 'test-cluster', node: 'prod-direct', port })

t.test('a forwarded port is judged by the node too, from the SSH certificate the request carries and its signature', async (t) => {
  const through = await warren(['proxy', 'port', `--identity=${carol}`, 'prod-direct', 'webui'], { input: 'hello webui' })
  t.equal(through.stdout, 'hello webui', `the proxy passes the certificate on to a direct node (${through.stderr.trim()})`)
  // Forged past the proxy: a proxy's own certificate, straight to the direct node's port.
  const proxyIdentity = identityDir(proxy.dataDir, 'proxy')
  const forged = (request: object) =>
    lineDial(
      { host: '127.0.0.1', port: directPort, rejectUnauthorized: false, cert: readFileSync(join(proxyIdentity, 'host.crt')), key: readFileSync(join(proxyIdentity, 'host.key')) },
      { client: 'forged past the proxy', ...request },
    )
  const genuine = proofOf(carol, 'webui')
  const control = await forged({ service: 'port', name: 'webui', certificate: sshCertOf(carol), proof: genuine })
  t.same(control.reply, { ok: true }, "a certificate whose roles allow the port opens it, with the request signed by the user's key")
  t.equal(control.echoed, 'ping')
  const otherCA = generateKeyPairSync('ed25519')
  const foreign = createSshCertificate({
    publicKey: generateKeyPairSync('ed25519').publicKey,
    caKey: otherCA.privateKey,
    type: 'user',
    keyId: 'carol',
    principals: [testLogin()],
    validAfter: new Date(Date.now() - 60_000),
    validBefore: new Date(Date.now() + 3_600_000),
  })
  const [webuiBefore, dbBefore] = [webui.accepted(), db.accepted()]
  const refusals = [
    { name: 'db', certificate: sshCertOf(carol), proof: proofOf(carol, 'db'), user: 'carol', reason: `the user's roles do not allow the port "db"` },
    { name: 'webui', certificate: sshCertOf(alice), proof: proofOf(alice, 'webui'), user: 'alice', reason: "the user's roles do not allow this node" },
    { name: 'webui', certificate: undefined, proof: undefined, user: 'unknown', reason: NO_CERTIFICATE },
    { name: 'webui', certificate: foreign, proof: undefined, user: 'unknown', reason: 'SSH certificate is signed by an untrusted CA' },
    // What anyone who relays a user's request (a proxy's stolen keys) could send again.
    {
      name: 'webui',
      certificate: sshCertOf(carol),
      proof: undefined,
      user: 'carol',
      reason: "the request is not signed by the user's key: warren proxy port must be of this node's version or later",
    },
    { name: 'webui', certificate: sshCertOf(carol), proof: genuine, user: 'carol', reason: 'the request was used before: a signed request opens one stream' },
    {
      name: 'webui',
      certificate: sshCertOf(carol),
      proof: proofOf(alice, 'webui'),
      user: 'carol',
      reason: "the request's signature is not the certificate key's for this port of this node",
    },
  ]
  for (const { name, certificate, proof, user, reason } of refusals) {
    const refused = await forged({ service: 'port', name, certificate, proof })
    t.same(refused.reply, { ok: false, error: `access to port "${name}" refused by the node: ${reason}` }, `${user}, ${name}: refused`)
    t.equal(refused.echoed, '')
    const logged = direct.daemon.logEntries().filter((entry) => entry.port === name && entry.user === user && entry.reason === reason)
    t.equal(logged.length, 1, `${user}, ${name}: the node logs the refusal`)
  }
  t.equal(webui.accepted(), webuiBefore, "the webui port's server saw no connection")
  t.equal(db.accepted(), dbBefore, "the db port's server saw no connection")
})

t.test('the proxy passes on only the SSH certificate of the user its TLS certificate names', async (t) => {
  const before = webui.accepted()
  const mixed = tempDir('warren-user-')
  cpSync(alice, mixed, { recursive: true })
  writeFileSync(join(mixed, PROFILE_FILES.sshCert), `${sshCertOf(bob)}\n`)
  const swapped = await warren(['proxy', 'port', `--identity=${mixed}`, 'lab-1', 'webui'], { input: 'hello webui' })
  t.not(swapped.code, 0)
  t.equal(swapped.stdout, '')
  t.match(swapped.stderr, `access to port "webui" of node "lab-1" denied: the request's SSH certificate names user "bob", the TLS certificate user "alice"`)
  const [host, port] = proxy.web.split(':')
  const tls = {
    host,
    port: Number(port),
    ALPNProtocols: [USER_ALPN],
    servername: CLUSTER_SERVER_NAME,
    ca: readFileSync(join(alice, PROFILE_FILES.hostCA)),
    cert: readFileSync(join(alice, PROFILE_FILES.tlsCert)),
    key: readFileSync(join(alice, PROFILE_FILES.tlsKey)),
    checkServerIdentity: () => undefined,
  }
  const bare = await lineDial(tls, { node: 'lab-1', service: 'port', name: 'webui' })
  t.same(bare.reply, {
    ok: false,
    error: `access to port "webui" of node "lab-1" denied: the request carries no SSH certificate, which nodes now require: upgrade warren`,
  })
  t.equal(webui.accepted(), before, "the webui port's server saw no connection")
})

t.test("each role's logins count on the nodes that role selects, not on another role's", async (t) => {
  // A role that opens the prod node's webui port and names no login (so gives none there),
  // beside lab's (whose logins are the user's own): lab's login must not reach the prod node.
  const prodPorts = await ctlWithInput(['create', '-f', '-'], PROD_WEB_ROLE.replace('name: prod-web', 'name: prod-ports').replace("    logins: ['{{internal.logins}}']\n", ''))
  t.equal(prodPorts.code, 0, prodPorts.stderr)
  const dave = await user('dave', 'lab,prod-ports')
  const lab = await openssh(dave, [`${testLogin()}@lab-1`, 'echo reached'])
  t.equal(lab.stdout, 'reached\n', `the control: lab's login on the lab node (${lab.stderr.trim()})`)
  const port = await warren(['proxy', 'port', `--identity=${dave}`, 'prod-1', 'webui'], { input: 'hello webui' })
  t.equal(port.stdout, 'hello webui', `prod-ports reaches the prod node's webui (${port.stderr.trim()})`)
  const prod = await openssh(dave, [`${testLogin()}@prod-1`, 'echo reached'])
  t.equal(prod.stdout, '', "lab's login does not log in on the prod node")
  t.not(prod.code, 0)
  t.equal((await auth.ctl(['users', 'rm', 'dave'])).code, 0, 'lab is given to alice alone again')
})

t.test('a role that opens only a port gives its user the port and no shell', async (t) => {
  // prod-ports (above) names no login: its user's certificates name none either.
  const pete = await user('pete', 'prod-ports')
  const port = await warren(['proxy', 'port', `--identity=${pete}`, 'prod-1', 'webui'], { input: 'hello webui' })
  t.equal(port.stdout, 'hello webui', `the port is reached (${port.stderr.trim()})`)
  const shell = await openssh(pete, [`${testLogin()}@prod-1`, 'echo reached'])
  t.equal(shell.stdout, '', 'no shell as the login the user was added with')
  t.not(shell.code, 0)
  t.equal((await auth.ctl(['users', 'rm', 'pete'])).code, 0)
})

t.test('a role given to a user is not removed', async (t) => {
  const refused = await auth.ctl(['rm', 'role/lab'])
  t.equal(refused.code, 1)
  t.equal(refused.stderr, 'ERROR: role "lab" is given to user alice: take it from them first\n')
  t.match((await auth.ctl(['get', 'roles', '--format=text'])).stdout, /^lab /m, 'still listed')
  const builtIn = await auth.ctl(['rm', 'role/access'])
  t.equal(builtIn.stderr, 'ERROR: role "access" is built in and cannot be removed\n')
})
