// The auth server's word that a version of the trusted set is the current one: taken only
// for that version, recent, and signed by a host CA the client trusts already.

import t from 'tap'
import { currentTrustSigned, signCurrentTrust } from './current-trust.ts'
import { KNOWN_HOSTS_MAX_AGE_MS } from './signed-known-hosts.ts'
import { createCA } from './x509.ts'

const caA = createCA('host CA A', 'c1')
const caB = createCA('host CA B', 'c1')
const now = Date.parse('2026-12-08T04:00:00Z')

t.test('a recent signature for the version, by a CA trusted', async (t) => {
  const signed = signCurrentTrust('c1', 7, [caB], now)
  t.ok(currentTrustSigned('c1', 7, signed, [caB.certPem], now), 'taken')
  t.ok(currentTrustSigned('c1', 7, signed, [caA.certPem, caB.certPem], now + KNOWN_HOSTS_MAX_AGE_MS), 'at the edge of its age')
  t.notOk(currentTrustSigned('c1', 6, signed, [caB.certPem], now), 'another version: an older set handed back with a current signature')
  t.notOk(currentTrustSigned('c1', 6, { ...signed, version: 6 }, [caB.certPem], now), 'the version changed after signing')
  t.notOk(currentTrustSigned('c2', 7, signed, [caB.certPem], now), 'another cluster')
  t.notOk(currentTrustSigned('c1', 7, signed, [caA.certPem], now), 'by a CA not trusted (one a rotation dropped, say)')
  t.notOk(currentTrustSigned('c1', 7, signed, [caB.certPem], now + KNOWN_HOSTS_MAX_AGE_MS + 1), 'too old: a replay')
  t.notOk(currentTrustSigned('c1', 7, signed, [caB.certPem], now - KNOWN_HOSTS_MAX_AGE_MS - 1), 'from too far ahead')
  t.notOk(currentTrustSigned('c1', 7, undefined, [caB.certPem], now), 'none: an auth server of an earlier version')
})
