// The auth server's word that a version of the trusted set is the current one: taken only
// for that version, for the keys of the answer it came in, and signed by a host CA the
// client trusts already.

import { generateKeyPairSync } from 'node:crypto'
import t from 'tap'
import { currentTrustSigned, signCurrentTrust } from './current-trust.ts'
import { createCA } from './x509.ts'

const caA = createCA('host CA A', 'c1')
const caB = createCA('host CA B', 'c1')
const fresh = () => ({ tls: generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey, ssh: generateKeyPairSync('ed25519').publicKey })

t.test("the version, for this answer's keys, by a CA trusted", async (t) => {
  const keys = fresh()
  const signed = signCurrentTrust('c1', 7, keys, [caB])
  t.ok(currentTrustSigned('c1', 7, keys, signed, [caB.certPem]), 'taken')
  t.ok(currentTrustSigned('c1', 7, keys, signed, [caA.certPem, caB.certPem]), 'among others trusted')
  t.notOk(currentTrustSigned('c1', 6, keys, signed, [caB.certPem]), 'another version: an older set handed back with a current word')
  t.notOk(currentTrustSigned('c1', 7, fresh(), signed, [caB.certPem]), 'the word given for another request, handed back with its set')
  t.notOk(currentTrustSigned('c1', 7, { ...keys, ssh: fresh().ssh }, signed, [caB.certPem]), 'another SSH key')
  t.notOk(currentTrustSigned('c2', 7, keys, signed, [caB.certPem]), 'another cluster')
  t.notOk(currentTrustSigned('c1', 7, keys, signed, [caA.certPem]), 'by a CA not trusted (one a rotation dropped, say)')
  t.notOk(currentTrustSigned('c1', 7, keys, undefined, [caB.certPem]), 'none: an auth server of an earlier version')
})
