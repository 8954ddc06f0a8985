import { generateKeyPairSync } from 'node:crypto'
import t from 'tap'
import { createSshCertificate } from '../shared/ssh-cert.ts'
import { portCertificateRefusal } from './user-gateway.ts'

const ca = generateKeyPairSync('ed25519')
const certificateFor = (keyId: string) =>
  createSshCertificate({
    publicKey: generateKeyPairSync('ed25519').publicKey,
    caKey: ca.privateKey,
    type: 'user',
    keyId,
    principals: ['pi'],
    validAfter: new Date(Date.now() - 60_000),
    validBefore: new Date(Date.now() + 3_600_000),
  })

t.test("a forwarded port's SSH certificate goes on to the node only when it names the TLS certificate's user", async (t) => {
  t.equal(portCertificateRefusal(certificateFor('alice'), 'alice'), undefined)
  t.equal(portCertificateRefusal(certificateFor('bob'), 'alice'), `the request's SSH certificate names user "bob", the TLS certificate user "alice"`)
  t.equal(portCertificateRefusal(undefined, 'alice'), 'the request carries no SSH certificate, which nodes now require: upgrade warren')
  t.match(portCertificateRefusal('ssh-ed25519 AAAA', 'alice'), /^the request's SSH certificate cannot be read: unsupported SSH certificate type/)
})
