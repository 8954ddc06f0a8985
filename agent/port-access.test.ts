import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import t from 'tap'
import type { Access } from '../shared/access.ts'
import { sshAccessExtensions } from '../shared/access-cert.ts'
import { createSshCertificate } from '../shared/ssh-cert.ts'
import { judgePortAccess, NO_CERTIFICATE, type PortAccessRequest } from './port-access.ts'

const userCA = generateKeyPairSync('ed25519')
const otherCA = generateKeyPairSync('ed25519')
const userKey = generateKeyPairSync('ed25519')
const now = new Date('2026-06-01T12:00:00Z')
const hour = 3_600_000

const labLimited: Access = {
  logins: ['pi'],
  nodes: [{ env: ['lab'] }],
  deny_nodes: [],
  ports: ['webui', 'db'],
  deny_ports: ['db'],
  admin: false,
  local_forwarding: true,
  remote_forwarding: false,
  agent_forwarding: false,
}

function certificate(options: { access?: Access; ca?: KeyObject; type?: 'user' | 'host'; validAfter?: Date; validBefore?: Date; keyId?: string } = {}): string {
  return createSshCertificate({
    publicKey: userKey.publicKey,
    caKey: options.ca ?? userCA.privateKey,
    type: options.type ?? 'user',
    keyId: options.keyId ?? 'alice',
    principals: ['pi'],
    validAfter: options.validAfter ?? new Date(now.getTime() - hour),
    validBefore: options.validBefore ?? new Date(now.getTime() + hour),
    extensions: options.access ? sshAccessExtensions(options.access) : undefined,
  })
}

function judge(request: Partial<PortAccessRequest>) {
  return judgePortAccess({ port: 'webui', trustedCaKeys: [userCA.publicKey], labels: { env: 'lab' }, now, ...request })
}

t.test("a certificate whose roles allow this node's labels and the port opens it", async (t) => {
  t.same(judge({ certificate: certificate({ access: labLimited }) }), { allowed: true, user: 'alice' })
})

t.test('a certificate without access reads as the built-in role access: every node and port', async (t) => {
  t.same(judge({ certificate: certificate(), port: 'db', labels: { env: 'prod' } }), { allowed: true, user: 'alice' })
})

t.test('the roles decide: a denied port, a port not allowed, a node whose labels are not allowed', async (t) => {
  const cert = certificate({ access: labLimited })
  t.same(judge({ certificate: cert, port: 'db' }), { allowed: false, user: 'alice', reason: `the user's roles deny the port "db"` })
  t.same(judge({ certificate: cert, port: 'grafana' }), { allowed: false, user: 'alice', reason: `the user's roles do not allow the port "grafana"` })
  t.same(judge({ certificate: cert, labels: { env: 'prod' } }), { allowed: false, user: 'alice', reason: "the user's roles do not allow this node" })
  const denyProd = { ...labLimited, nodes: [{ '*': ['*'] }], deny_nodes: [{ env: ['prod'] }] }
  t.same(judge({ certificate: certificate({ access: denyProd }), labels: { env: 'prod' } }), { allowed: false, user: 'alice', reason: "the user's roles deny this node" })
})

t.test('no certificate, or one the node cannot trust, is refused before anything is judged', async (t) => {
  t.same(judge({}), { allowed: false, reason: NO_CERTIFICATE })
  t.same(judge({ certificate: certificate({ ca: otherCA.privateKey }) }), { allowed: false, reason: 'SSH certificate is signed by an untrusted CA' })
  t.same(judge({ certificate: certificate({ type: 'host' }) }), {
    allowed: false,
    reason: 'SSH certificate has the wrong type: it is a host certificate, a user certificate is required',
  })
  t.match(judge({ certificate: certificate({ validBefore: new Date(now.getTime() - 1000) }) }), { allowed: false, reason: /^SSH certificate has expired/ })
  t.match(judge({ certificate: certificate({ validAfter: new Date(now.getTime() + 60_000) }) }), { allowed: false, reason: /^SSH certificate is not yet valid/ })
  t.match(judge({ certificate: 'ssh-ed25519 AAAA' }), { allowed: false, reason: /^unsupported SSH certificate type/ })
  // A byte changed in what the CA signed: the key ID, say, or the access.
  const line = certificate({ access: labLimited })
  const blob = Buffer.from(line.split(' ')[1], 'base64')
  blob[blob.indexOf('alice') + 1] ^= 0x01
  t.same(judge({ certificate: `ssh-ed25519-cert-v01@openssh.com ${blob.toString('base64')}` }), { allowed: false, reason: 'SSH certificate has a bad signature' })
})

t.test('malformed access in a trusted certificate is refused, naming the user', async (t) => {
  const line = createSshCertificate({
    publicKey: userKey.publicKey,
    caKey: userCA.privateKey,
    type: 'user',
    keyId: 'alice',
    principals: ['pi'],
    validAfter: new Date(now.getTime() - hour),
    validBefore: new Date(now.getTime() + hour),
    extensions: { 'warren-access@warren': '{"logins":"pi","admin":false}' },
  })
  t.same(judge({ certificate: line }), { allowed: false, user: 'alice', reason: `the certificate's access is malformed: "logins" is not a list of strings` })
})
