import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import t from 'tap'
import type { Access } from '../shared/access.ts'
import { sshAccessExtensions } from '../shared/access-cert.ts'
import { PortProofs, PROOF_WINDOW_MS, signPortRequest } from '../shared/port-request-proof.ts'
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
  rules: [{ nodes: { env: ['lab'] }, logins: ['pi'], ports: ['webui', 'db'] }],
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

const node = { cluster: 'c1', names: ['pi-1', '6f1c2a3e-0000-4000-8000-000000000001'] }

/** Judged as the node would, with a fresh proof by the user's key for the port unless the request gives its own. */
function judge(request: Partial<PortAccessRequest>, proofs = new PortProofs(() => now.getTime())) {
  const port = request.port ?? 'webui'
  const proof = 'proof' in request ? request.proof : signPortRequest(userKey.privateKey, { cluster: 'c1', node: 'pi-1', port }, now.getTime())
  return judgePortAccess({ port, trustedCaKeys: [userCA.publicKey], labels: { env: 'lab' }, now, node, proofs, ...request, proof })
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

t.test("a request must be signed by the certificate's key, for this port of this node, recently, and once", async (t) => {
  const cert = certificate({ access: labLimited })
  const at = now.getTime()
  const signed = (fields: { cluster?: string; node?: string; port?: string; key?: KeyObject; at?: number }) =>
    signPortRequest(fields.key ?? userKey.privateKey, { cluster: fields.cluster ?? 'c1', node: fields.node ?? 'pi-1', port: fields.port ?? 'webui' }, fields.at ?? at)
  const refused = (reason: RegExp | string) => ({ allowed: false, user: 'alice', reason })
  t.match(judge({ certificate: cert, proof: undefined }), refused(/not signed by the user's key/), 'the certificate alone, as anyone who saw it could send it')
  t.match(judge({ certificate: cert, proof: signed({ key: generateKeyPairSync('ed25519').privateKey }) }), refused(/not the certificate key's/), 'signed by another key')
  t.match(judge({ certificate: cert, proof: signed({ port: 'grafana' }) }), refused(/not the certificate key's/), 'signed for another port')
  t.match(judge({ certificate: cert, proof: signed({ node: 'pi-2' }) }), refused(/not the certificate key's/), 'signed for another node')
  t.match(judge({ certificate: cert, proof: signed({ cluster: 'c2' }) }), refused(/not the certificate key's/), 'signed for another cluster')
  t.match(judge({ certificate: cert, proof: { ...signed({}), at: at + 1 } }), refused(/not the certificate key's/), 'its time changed')
  t.match(judge({ certificate: cert, proof: signed({ at: at - PROOF_WINDOW_MS - 1 }) }), refused(/more than 5 minutes from this node's clock/), 'signed too long ago')
  t.match(judge({ certificate: cert, proof: signed({ at: at + PROOF_WINDOW_MS + 1 }) }), refused(/more than 5 minutes/), 'or too far ahead')
  const proofs = new PortProofs(() => at)
  const once = signed({ node: node.names[1] })
  t.same(judge({ certificate: cert, proof: once }, proofs), { allowed: true, user: 'alice' }, 'the node named by its host ID, within the window')
  t.match(judge({ certificate: cert, proof: once }, proofs), refused(/used before/), 'the same request again')
  const denied = signed({ port: 'db' })
  t.match(judge({ certificate: cert, port: 'db', proof: denied }, proofs), refused(/deny the port "db"/), 'the roles are judged before the proof')
})
