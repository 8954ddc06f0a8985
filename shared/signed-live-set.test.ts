// The live proxy set as nodes take it: only as a trusted host CA signed exactly these IDs
// for this cluster at this time; and the auth server's signing times only grow.

import t from 'tap'
import type { Authority } from '../auth/authorities.ts'
import { signedLiveSet } from '../auth/trust.ts'
import { liveSetSigned, signLiveSet } from './signed-live-set.ts'
import { createCA } from './x509.ts'

const ca = createCA('host CA', 'c1')
const other = createCA('another host CA', 'c1')
const signer = [{ certPem: ca.certPem, key: ca.key }]

t.test('a set verifies as signed, in any order of its IDs, and not once anything in it changes', async (t) => {
  const signed = signLiveSet('c1', ['b', 'a'], signer, 1000)
  t.ok(liveSetSigned('c1', ['a', 'b'], signed, [ca.certPem]))
  t.ok(liveSetSigned('c1', ['b', 'a'], signed, [other.certPem, ca.certPem]), 'among other trusted CAs')
  t.notOk(liveSetSigned('c1', ['a'], signed, [ca.certPem]), 'an ID left out')
  t.notOk(liveSetSigned('c1', ['a', 'b', 'z'], signed, [ca.certPem]), 'an ID added')
  t.notOk(liveSetSigned('c2', ['a', 'b'], signed, [ca.certPem]), 'another cluster')
  t.notOk(liveSetSigned('c1', ['a', 'b'], { ...signed, signed_at: 2000 }, [ca.certPem]), 'another time')
  t.notOk(liveSetSigned('c1', ['a', 'b'], signed, [other.certPem]), 'a CA the node does not trust')
  t.notOk(liveSetSigned('c1', ['a', 'b'], undefined, [ca.certPem]), 'no signature')
})

t.test("the auth server's signing times only grow, even when its clock steps back", async (t) => {
  const hostCA = { keySets: [{ tlsCertPem: ca.certPem, tlsKey: ca.key }] } as unknown as Authority
  const first = signedLiveSet('c1', hostCA, ['b', 'a'], 5_000_000_000_000)
  t.same(first.proxies, ['a', 'b'], 'sorted')
  const stepped = signedLiveSet('c1', hostCA, ['a'], 4_999_999_000_000)
  t.ok(stepped.proxies_signed.signed_at > first.proxies_signed.signed_at, 'later than the one before')
  t.ok(liveSetSigned('c1', ['a'], stepped.proxies_signed, [ca.certPem]))
})
