import { execFileSync } from 'node:child_process'
import { generateKeyPairSync, X509Certificate } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { type Access, decodeAccess, encodeAccess, legacyAccess, loginRefusal, loginsOn, matchesLabels, nodeRefusal, portRefusal } from './access.ts'
import { ACCESS_OID, ACCESS_SSH_EXTENSION, accessOfSshCertificate, accessOfX509Certificate, sshAccessExtensions, x509AccessExtension } from './access-cert.ts'
import { createSshCertificate, parseSshCertificate } from './ssh-cert.ts'
import { createCA, createCertificate } from './x509.ts'

const LAB = { env: 'lab', site: 'berlin' }
const PROD = { env: 'prod', site: 'berlin' }

/** An access whose roles each select one of `nodes`, with all its logins and ports, unless `rules` says otherwise. */
function access(overrides: Partial<Access> = {}): Access {
  const logins = overrides.logins ?? ['pi']
  const ports = overrides.ports ?? []
  const nodes = overrides.nodes ?? []
  return {
    logins,
    nodes,
    deny_nodes: [],
    ports,
    deny_ports: [],
    rules: nodes.map((matcher) => ({ nodes: matcher, logins, ports })),
    admin: false,
    local_forwarding: true,
    remote_forwarding: false,
    agent_forwarding: false,
    ...overrides,
  }
}
const EVERYWHERE = [{ '*': ['*'] }]

t.test('a matcher selects the nodes whose labels it names, with * for any value and {"*": ["*"]} for any node', async (t) => {
  t.ok(matchesLabels({ env: ['lab'] }, LAB))
  t.notOk(matchesLabels({ env: ['lab'] }, PROD))
  t.ok(matchesLabels({ env: ['lab', 'prod'] }, PROD), 'a list of values is any of them')
  t.ok(matchesLabels({ env: ['*'] }, PROD), 'a value * needs the label, with any value')
  t.notOk(matchesLabels({ rack: ['*'] }, PROD), 'a node without the label does not match')
  t.notOk(matchesLabels({ env: ['lab'], site: ['paris'] }, LAB), 'every label named must match')
  t.ok(matchesLabels({ '*': ['*'] }, {}), 'any node, labelled or not')
  t.notOk(matchesLabels({}, LAB), 'an empty matcher selects nothing')
  t.notOk(matchesLabels({ constructor: ['*'] }, {}), "an object's inherited names are no labels")
})

t.test('nodes: allowed by any allow rule, refused by any deny rule, deny first', async (t) => {
  const lab = access({ nodes: [{ env: ['lab'] }] })
  t.equal(nodeRefusal(lab, LAB), undefined)
  t.equal(nodeRefusal(lab, PROD), "the user's roles do not allow this node")
  const union = access({ nodes: [{ env: ['lab'] }, { env: ['prod'] }] })
  t.equal(nodeRefusal(union, PROD), undefined, 'the allow rules of several roles add up')
  const denied = access({ nodes: [{ '*': ['*'] }], deny_nodes: [{ env: ['prod'] }] })
  t.equal(nodeRefusal(denied, LAB), undefined)
  t.equal(nodeRefusal(denied, PROD), "the user's roles deny this node")
  t.equal(nodeRefusal(access(), LAB), "the user's roles do not allow this node", 'no allow rule, no node')
})

t.test('logins and ports', async (t) => {
  t.equal(loginRefusal(access({ nodes: EVERYWHERE }), 'pi', LAB), undefined)
  t.equal(loginRefusal(access({ nodes: EVERYWHERE }), 'root', LAB), `the user's roles do not allow the login "root"`)
  const web = access({ nodes: EVERYWHERE, ports: ['web', 'db'], deny_ports: ['db'] })
  t.equal(portRefusal(web, 'web', LAB), undefined)
  t.equal(portRefusal(web, 'db', LAB), `the user's roles deny the port "db"`)
  t.equal(portRefusal(web, 'mqtt', LAB), `the user's roles do not allow the port "mqtt"`)
  t.equal(portRefusal(access({ nodes: EVERYWHERE, ports: ['*'] }), 'mqtt', LAB), undefined)
  t.equal(portRefusal(access({ nodes: EVERYWHERE, ports: ['*'], deny_ports: ['*'] }), 'web', LAB), `the user's roles deny the port "web"`)
})

t.test("each role's logins and ports count on the nodes that role selects, not on another role's", async (t) => {
  // Role dba: root on env=db nodes, port pg; role web: www on env=web nodes, port http.
  const roles = access({
    logins: ['root', 'www'],
    nodes: [{ env: ['db'] }, { env: ['web'] }],
    ports: ['pg', 'http'],
    rules: [
      { nodes: { env: ['db'] }, logins: ['root'], ports: ['pg'] },
      { nodes: { env: ['web'] }, logins: ['www'], ports: ['http'] },
    ],
  })
  const [db, web] = [{ env: 'db' }, { env: 'web' }]
  t.equal(loginRefusal(roles, 'root', db), undefined)
  t.equal(loginRefusal(roles, 'root', web), `the user's roles do not allow the login "root" on this node`)
  t.equal(loginRefusal(roles, 'www', web), undefined)
  t.same(loginsOn(roles, web), ['www'])
  t.equal(portRefusal(roles, 'pg', db), undefined)
  t.equal(portRefusal(roles, 'pg', web), `the user's roles do not allow the port "pg"`)
  t.equal(nodeRefusal(roles, { env: 'prod' }), "the user's roles do not allow this node")
  t.same(loginsOn(roles, { env: 'prod' }), [])
})

t.test('a certificate from before roles reaches every node and port as its principals', async (t) => {
  const legacy = legacyAccess(['root'])
  t.equal(nodeRefusal(legacy, PROD), undefined)
  t.equal(nodeRefusal(legacy, {}), undefined)
  t.equal(portRefusal(legacy, 'web', PROD), undefined)
  t.equal(loginRefusal(legacy, 'root', PROD), undefined)
  t.not(loginRefusal(legacy, 'pi', PROD), undefined)
  t.equal(legacy.admin, false)
})

t.test('the compact JSON reads back, and anything malformed is refused', async (t) => {
  const original = access({ nodes: [{ env: ['lab'] }], deny_nodes: [{ tier: ['db'] }], ports: ['web'], deny_ports: ['ssh'], admin: true })
  t.same(decodeAccess(encodeAccess(original)), original)
  const limited: Access = { ...original, max_sessions: 2, max_connections: 3 }
  t.same(decodeAccess(encodeAccess(limited)), limited, 'the limits travel too')
  t.notMatch(encodeAccess(original), /max_/, 'and only when a role sets them')
  t.throws(() => decodeAccess(JSON.stringify({ ...original, max_sessions: 0 })), /"max_sessions" is not a whole number of at least 1/)
  t.throws(() => decodeAccess(JSON.stringify({ ...original, max_connections: '3' })), /"max_connections" is not a whole number of at least 1/)
  t.throws(() => decodeAccess('{'), /not JSON/)
  t.throws(() => decodeAccess('[]'), /not an object/)
  t.throws(() => decodeAccess(JSON.stringify({ ...original, logins: 'root' })), /"logins" is not a list of strings/)
  t.throws(() => decodeAccess(JSON.stringify({ ...original, nodes: [{ env: 'lab' }] })), /"nodes" holds a label whose values are not strings/)
  t.throws(() => decodeAccess(JSON.stringify({ ...original, admin: 'yes' })), /"admin"/)
  t.throws(() => decodeAccess(JSON.stringify({ ...original, rules: [{ nodes: { env: ['lab'] }, logins: 'root', ports: [] }] })), /"rules" holds a rule whose logins/)
  t.throws(() => decodeAccess(JSON.stringify({ ...original, rules: {} })), /"rules" is not a list/)
  // Certificates from before roles were judged one by one: each allowed node took every login and port.
  const { rules: _, ...older } = access({ nodes: [{ env: ['lab'] }, { env: ['prod'] }], logins: ['pi', 'root'], ports: ['web'] })
  t.same(decodeAccess(JSON.stringify(older)).rules, [
    { nodes: { env: ['lab'] }, logins: ['pi', 'root'], ports: ['web'] },
    { nodes: { env: ['prod'] }, logins: ['pi', 'root'], ports: ['web'] },
  ])
})

t.test('forwarding: absent from older certificates means ssh -L only; the permit-* extensions follow the access', async (t) => {
  const { local_forwarding, remote_forwarding, agent_forwarding, ...older } = access()
  t.match(decodeAccess(JSON.stringify(older)), { local_forwarding: true, remote_forwarding: false, agent_forwarding: false })
  t.throws(() => decodeAccess(JSON.stringify({ ...older, agent_forwarding: 'yes' })), /"agent_forwarding" is not true or false/)
  const permits = (overrides: Partial<Access>) => Object.keys(sshAccessExtensions(access(overrides))).filter((name) => /^permit-(agent|port)-forwarding$/.test(name))
  t.same(permits({}), ['permit-port-forwarding'])
  t.same(permits({ local_forwarding: false }), [], 'neither -L nor -R: a stock sshd refuses both too')
  t.same(permits({ local_forwarding: false, remote_forwarding: true }), ['permit-port-forwarding'])
  t.same(permits({ agent_forwarding: true }), ['permit-agent-forwarding', 'permit-port-forwarding'])
})

t.test('both user certificates carry the access; OpenSSH and OpenSSL see the extensions', async (t) => {
  const dir = t.testdir()
  const granted = access({ logins: ['pi', 'root'], nodes: [{ env: ['lab'] }], ports: ['web'] })
  const ca = generateKeyPairSync('ed25519')
  const line = createSshCertificate({
    publicKey: generateKeyPairSync('ed25519').publicKey,
    caKey: ca.privateKey,
    type: 'user',
    keyId: 'alice',
    principals: granted.logins,
    validAfter: new Date(Date.now() - 60_000),
    validBefore: new Date(Date.now() + 3_600_000),
    extensions: sshAccessExtensions(granted),
  })
  t.same(accessOfSshCertificate(parseSshCertificate(line)), granted)
  writeFileSync(join(dir, 'id-cert.pub'), line + '\n')
  const listed = execFileSync('ssh-keygen', ['-L', '-f', join(dir, 'id-cert.pub')], { encoding: 'utf8' })
  t.match(listed, ACCESS_SSH_EXTENSION, 'ssh-keygen lists the extension')
  t.match(listed, 'permit-pty')

  const tlsCA = createCA('users', 'cluster')
  const pem = createCertificate({
    subject: { CN: 'alice', O: 'cluster', OU: ['user'] },
    issuer: { CN: 'users', O: 'cluster' },
    publicKey: generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey,
    signingKey: tlsCA.key,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
    extKeyUsage: ['clientAuth'],
    extensions: [x509AccessExtension(granted)],
  })
  t.same(accessOfX509Certificate(new X509Certificate(pem)), granted)
  writeFileSync(join(dir, 'user.pem'), pem)
  const text = execFileSync('openssl', ['x509', '-noout', '-text', '-in', join(dir, 'user.pem')], { encoding: 'utf8' })
  t.match(text, ACCESS_OID, 'OpenSSL reads the certificate and shows the extension by its OID')
  t.match(text, '"env":["lab"]')
})

t.test('certificates without the access extension read as the built-in role access', async (t) => {
  const ca = generateKeyPairSync('ed25519')
  const line = createSshCertificate({
    publicKey: generateKeyPairSync('ed25519').publicKey,
    caKey: ca.privateKey,
    type: 'user',
    keyId: 'alice',
    principals: ['root'],
    validAfter: new Date(Date.now() - 60_000),
    validBefore: new Date(Date.now() + 3_600_000),
  })
  t.same(accessOfSshCertificate(parseSshCertificate(line)), legacyAccess(['root']))
  const tlsCA = createCA('users', 'cluster')
  const pem = createCertificate({
    subject: { CN: 'alice', O: 'cluster', OU: ['user'] },
    issuer: { CN: 'users', O: 'cluster' },
    publicKey: generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey,
    signingKey: tlsCA.key,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
  })
  t.same(accessOfX509Certificate(new X509Certificate(pem)), legacyAccess([]))
})
