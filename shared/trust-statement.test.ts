// Signed sets of CAs: what a node takes (signed by a CA it trusts, newer than its own) and
// what it refuses, as a proxy holding stolen keys would try it.

import { generateKeyPairSync } from 'node:crypto'
import t, { type Test } from 'tap'
import { sshPublicKeyLine } from './ssh-cert.ts'
import { checkTrust, signedByHostCA, signTrust, TrustRefused, trustedHostCAs } from './trust-statement.ts'
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

// The host CAs' SSH keys, one per host CA: signed with the rest (signatures_v2), while the
// signatures hosts of earlier versions check stay over the fields they know.

const sshKey = (comment: string) => sshPublicKeyLine(generateKeyPairSync('ed25519').publicKey, comment)
const CURRENT_SSH = sshKey('c1 host CA')
const NEXT_SSH = sshKey('c1 host CA 2')
const ATTACKER_SSH = sshKey('attacker')
const keyed = { ...rotated, host_ca_ssh_keys: [CURRENT_SSH, NEXT_SSH] }
const heldKeys = { ...held, hostCASshKeys: [CURRENT_SSH] }

t.test('the host CAs’ SSH keys are signed with the set', async (t) => {
  const statement = signTrust(keyed, [signer(current), signer(next)])
  t.same(statement.host_ca_ssh_keys, [CURRENT_SSH, NEXT_SSH])
  t.equal(statement.signatures_v2?.length, 2, 'by every host CA')
  t.equal(checkTrust(statement, heldKeys), true, 'taken by a host that holds them')
  t.equal(checkTrust(statement, held), true, 'and by one that holds none')
  t.same(trustedHostCAs(statement, heldKeys), { hostCAPems: keyed.host_ca_certs, hostCASshKeys: keyed.host_ca_ssh_keys }, 'which then trusts them')
  // A host of the previous version checks `signatures` over exactly what it knows, and ignores the rest.
  const payload = [statement.cluster_name, statement.version, statement.host_ca_certs, statement.user_ca_ssh_keys]
  t.ok(signedByHostCA('warren trusted CAs v1', payload, statement.signatures, [current.certPem]), 'hosts of the previous version verify it as before')
  t.notOk(signedByHostCA('warren trusted CAs v1', payload, statement.signatures_v2!, [current.certPem]), 'the signatures over the SSH keys are for another purpose')
  const parsedByOld = { ...statement, host_ca_ssh_keys: undefined, signatures_v2: undefined }
  t.equal(checkTrust(parsedByOld, held), true, 'and so does this version without the SSH keys, for a host that holds none')
})

t.test('what a proxy cannot do to the host CAs’ SSH keys', async (t) => {
  const genuine = signTrust(keyed, [signer(current)])
  refused(t, () => checkTrust({ ...genuine, host_ca_ssh_keys: [CURRENT_SSH, ATTACKER_SSH] }, heldKeys), /no host CA this node trusts/, 'put a key of its own in the set')
  refused(t, () => checkTrust({ ...genuine, host_ca_ssh_keys: [NEXT_SSH, CURRENT_SSH] }, heldKeys), /no host CA this node trusts/, 'pair the keys with other CAs')
  refused(t, () => checkTrust({ ...genuine, host_ca_ssh_keys: [ATTACKER_SSH, ATTACKER_SSH] }, held), /no host CA this node trusts/, 'name keys to a host that holds none')
  refused(t, () => checkTrust({ ...genuine, signatures_v2: undefined }, heldKeys), /no host CA this node trusts/, 'leave their signatures out')
  refused(t, () => checkTrust({ ...genuine, signatures_v2: genuine.signatures }, heldKeys), /no host CA this node trusts/, 'pass the other signatures off as theirs')
  refused(
    t,
    () => checkTrust(signTrust({ ...keyed, host_ca_ssh_keys: [ATTACKER_SSH, ATTACKER_SSH] }, [signer(stranger)]), heldKeys),
    /no host CA this node trusts/,
    'sign keys of its own with a CA of its own',
  )
  // Keys taken out, with their signatures: the other signatures still verify, but the host keeps its keys only for the host CAs they go with.
  const stripped = { ...genuine, host_ca_ssh_keys: undefined, signatures_v2: undefined }
  refused(t, () => checkTrust(stripped, heldKeys), /without their SSH keys/, 'take them out of a set that names other host CAs')
  const sameCAs = signTrust({ ...rotated, version: 200, host_ca_certs: [current.certPem] }, [signer(current)])
  t.equal(checkTrust(sameCAs, heldKeys), true, 'a newer set without them, of the host CAs held, is taken')
  t.same(trustedHostCAs(sameCAs, heldKeys).hostCASshKeys, [CURRENT_SSH], 'keeping the keys held')
  t.same(trustedHostCAs(stripped, held).hostCASshKeys, undefined, 'a host that holds none gets none')
})

t.test('the SSH keys, signed, must be one readable key per host CA', async (t) => {
  refused(t, () => checkTrust(signTrust({ ...keyed, host_ca_ssh_keys: [CURRENT_SSH] }, [signer(current)]), heldKeys), /one SSH key per host CA/, 'fewer keys than CAs')
  refused(t, () => checkTrust(signTrust({ ...keyed, host_ca_ssh_keys: [CURRENT_SSH, 'ssh-rsa AAAA'] }, [signer(current)]), heldKeys), /cannot be read/, 'a key that cannot be read')
})

t.test('a host that holds no SSH keys takes them with the set it holds, at its version', async (t) => {
  const same = signTrust({ ...keyed, version: 100, host_ca_certs: [current.certPem], host_ca_ssh_keys: [CURRENT_SSH] }, [signer(current)])
  t.equal(checkTrust(same, held), true, 'the set held, with the keys')
  t.equal(checkTrust(same, heldKeys), false, 'what a host holding them holds already')
  t.equal(checkTrust(signTrust({ ...same, version: 50 }, [signer(current)]), held), false, 'not at an older version: the held set was signed again since')
  refused(t, () => checkTrust(signTrust({ ...same, host_ca_ssh_keys: [NEXT_SSH] }, [signer(current)]), heldKeys), /not newer/, 'other keys for the CAs held, at the same version')
})
