// Signed sets of CAs: what a node takes (signed by a CA it trusts, newer than its own) and
// what it refuses, as a proxy holding stolen keys would try it.

import t, { type Test } from 'tap'
import { checkTrust, signTrust, TrustRefused } from './trust-statement.ts'
import { createCA } from './x509.ts'

const current = createCA('c1 host CA', 'c1')
const next = createCA('c1 host CA 2', 'c1')
const stranger = createCA('other host CA', 'c1')
const USER_CA = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHbkqHZ4qLzJDc5sVn3Y7sK3yS4nKxFf5x8xZ0QWbQ0r c1 user CA'
const ATTACKER_USER_CA = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE3zWm0Qe7yq7YVZy1gGjQeXfXgkqv3m9bqXx2T0H3Qm attacker'

const held = { clusterName: 'c1', hostCAPems: [current.certPem], userCASshKeys: [USER_CA], version: 100 }
const signer = (ca: ReturnType<typeof createCA>) => ({ certPem: ca.certPem, key: ca.key })
const rotated = { cluster_name: 'c1', version: 200, host_ca_certs: [current.certPem, next.certPem], user_ca_ssh_keys: [USER_CA] }

const refused = (t: Test, run: () => unknown, reason: RegExp, message: string) => {
  try {
    run()
    t.fail(message)
  } catch (error) {
    t.ok(error instanceof TrustRefused && reason.test(error.message), message)
  }
}

t.test('a newer set signed by a trusted CA is taken; the same set again changes nothing', async (t) => {
  t.equal(checkTrust(signTrust(rotated, [signer(current), signer(next)]), held), true)
  t.equal(checkTrust(signTrust(rotated, [signer(next), signer(current)]), held), true, 'any one trusted signature will do')
  const same = signTrust({ ...rotated, version: 50, host_ca_certs: [current.certPem.trimEnd()] }, [signer(current)])
  t.equal(checkTrust(same, held), false, 'the held set at an older version (a PEM without its last newline is the same PEM)')
  t.equal(checkTrust(signTrust({ ...rotated, version: 100, host_ca_certs: [current.certPem] }, [signer(current)]), held), false, 'the held set at its own version')
})

t.test('the held set at a newer version is taken, so that a set in between cannot come back', async (t) => {
  // A rotation the node missed (rotated, 200) was rolled back (the held set again, 300).
  const rolledBack = signTrust({ ...rotated, version: 300, host_ca_certs: [current.certPem] }, [signer(current)])
  t.equal(checkTrust(rolledBack, held), true)
  const now = { ...held, version: 300 }
  refused(t, () => checkTrust(signTrust(rotated, [signer(current), signer(next)]), now), /not newer/, 'the rotation rolled back, replayed')
})

t.test('what a proxy cannot do', async (t) => {
  refused(t, () => checkTrust(undefined, held), /signature/, 'leave the signature out')
  refused(t, () => checkTrust(signTrust({ ...rotated, host_ca_certs: [stranger.certPem] }, [signer(stranger)]), held), /no host CA this node trusts/, 'sign with a CA of its own')
  const genuine = signTrust(rotated, [signer(current)])
  refused(t, () => checkTrust({ ...genuine, user_ca_ssh_keys: [ATTACKER_USER_CA] }, held), /no host CA this node trusts/, 'change a genuine set under its signature')
  refused(t, () => checkTrust({ ...genuine, version: 300 }, held), /no host CA this node trusts/, 'change its version under its signature')
  refused(
    t,
    () => checkTrust({ ...genuine, signatures: [{ ...genuine.signatures[0]!, ca_pin: 'sha256:00' }] }, held),
    /no host CA this node trusts/,
    'name another CA for a signature',
  )
  refused(t, () => checkTrust(signTrust({ ...rotated, version: 100 }, [signer(current)]), held), /not newer/, 'replay an older set (a rollback past a rotation)')
  refused(t, () => checkTrust(signTrust({ ...rotated, cluster_name: 'c2' }, [signer(current)]), held), /cluster/, "pass off another cluster's set")
  refused(t, () => checkTrust(signTrust({ ...rotated, user_ca_ssh_keys: [] }, [signer(current)]), held), /no user CA/, 'empty a list')
})

t.test('a join trusts only what the pinned CA signed', async (t) => {
  const joining = { clusterName: 'c1', hostCAPems: [current.certPem], userCASshKeys: [], version: -1 }
  t.equal(checkTrust(signTrust({ ...rotated, version: 0 }, [signer(current)]), joining), true, 'a cluster that never rotated has version 0')
  refused(
    t,
    () => checkTrust(signTrust({ ...rotated, host_ca_certs: [current.certPem, stranger.certPem] }, [signer(stranger)]), joining),
    /no host CA this node trusts/,
    'a CA listed beside the pinned one signs nothing',
  )
})
