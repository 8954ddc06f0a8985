// Signed known_hosts lists: taken when a trusted host CA signed them for this cluster lately,
// refused when changed, from another CA, another cluster, or old (a replay).

import t from 'tap'
import { KNOWN_HOSTS_MAX_AGE_MS, knownHostsSigned, signKnownHosts } from './signed-known-hosts.ts'
import { createCA } from './x509.ts'

const ca = createCA('c1 host CA', 'c1')
const other = createCA('other CA', 'c1')
const lines = ['pi-1,0b8c5a3e-8a43-4d1f-9a3c-2f1e6b7d9c10 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHbkqHZ4qLzJDc5sVn3Y7sK3yS4nKxFf5x8xZ0QWbQ0r']
const NOW = 1_800_000_000_000
const signed = signKnownHosts('c1', lines, [{ certPem: ca.certPem, key: ca.key }], NOW)

t.test('a list a trusted host CA signed lately is taken', async (t) => {
  t.ok(knownHostsSigned('c1', lines, signed, [ca.certPem], NOW + 1000))
  t.ok(knownHostsSigned('c1', lines, signed, [ca.certPem], NOW - 60_000), "a client's clock a minute behind")
})

t.test('what is refused', async (t) => {
  t.notOk(knownHostsSigned('c1', lines, undefined, [ca.certPem], NOW), 'no signature')
  t.notOk(
    knownHostsSigned('c1', [`${lines[0]!.split(' ')[0]} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE3zWm0Qe7yq7YVZy1gGjQeXfXgkqv3m9bqXx2T0H3Qm`], signed, [ca.certPem], NOW),
    'other lines',
  )
  t.notOk(knownHostsSigned('c1', lines, signed, [other.certPem], NOW), 'a CA not trusted')
  t.notOk(knownHostsSigned('c2', lines, signed, [ca.certPem], NOW), 'another cluster')
  t.notOk(knownHostsSigned('c1', lines, signed, [ca.certPem], NOW + KNOWN_HOSTS_MAX_AGE_MS + 1), 'an old list, replayed')
  t.notOk(knownHostsSigned('c1', lines, { ...signed, signed_at: NOW + 1 }, [ca.certPem], NOW), 'a time changed under the signature')
})
