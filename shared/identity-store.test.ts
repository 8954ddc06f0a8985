// The identity on disk across a crash in the middle of a save: always one whole identity,
// never the files of two.

import { generateKeyPairSync } from 'node:crypto'
import { cpSync, existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { tempDir } from '../test/helpers/cluster.ts'
import { AssignedLabelsRefused, signAssignedLabels } from './assigned-labels.ts'
import { acceptAssignedLabels, applyTrust, identityDir, identityExists, loadIdentity, type NodeIdentity, saveIdentity } from './identity-store.ts'
import { sshPublicKeyLine } from './ssh-cert.ts'
import { checkTrust, signTrust } from './trust-statement.ts'
import { createCA } from './x509.ts'

const identity = (n: number): NodeIdentity => ({
  hostId: `host-${n}`,
  nodename: 'pi-1',
  clusterName: 'c1',
  roles: ['node'],
  authServers: ['proxy.example.com:3080'],
  tlsKeyPem: `tls key ${n}\n`,
  tlsCertPem: `tls cert ${n}\n`,
  sshKeyPem: `ssh key ${n}\n`,
  sshCert: `ssh cert ${n}\n`,
  hostCAPems: [],
  userCASshKeys: ['ssh-ed25519 AAAA user CA'],
  trustVersion: n,
})
const keys = (loaded: NodeIdentity | undefined) => loaded && [loaded.hostId, loaded.tlsKeyPem, loaded.tlsCertPem, loaded.sshKeyPem, loaded.sshCert]

t.test('a save replaces the identity whole and leaves nothing beside it', async (t) => {
  const dataDir = tempDir()
  saveIdentity(dataDir, identity(1))
  saveIdentity(dataDir, identity(2))
  t.same(keys(loadIdentity(dataDir)), keys(identity(2)))
  t.equal(loadIdentity(dataDir)?.trustVersion, 2)
  t.notOk(existsSync(`${identityDir(dataDir)}.next`) || existsSync(`${identityDir(dataDir)}.previous`))
})

t.test('a crash while the new identity is written leaves the old one', async (t) => {
  const dataDir = tempDir()
  saveIdentity(dataDir, identity(1))
  // The new identity's files, all but identity.json (written last): where a crash stops it.
  const scratch = tempDir()
  saveIdentity(scratch, identity(2))
  cpSync(identityDir(scratch), `${identityDir(dataDir)}.next`, { recursive: true })
  rmSync(`${identityDir(dataDir)}.next/identity.json`)
  t.same(keys(loadIdentity(dataDir)), keys(identity(1)))
  saveIdentity(dataDir, identity(3))
  t.same(keys(loadIdentity(dataDir)), keys(identity(3)), 'and the next save succeeds')
})

t.test('a crash between the two renames leaves the new identity, whole', async (t) => {
  const dataDir = tempDir()
  saveIdentity(dataDir, identity(1))
  const scratch = tempDir()
  saveIdentity(scratch, identity(2))
  cpSync(identityDir(scratch), `${identityDir(dataDir)}.next`, { recursive: true })
  renameSync(identityDir(dataDir), `${identityDir(dataDir)}.previous`)
  t.ok(identityExists(dataDir))
  t.same(keys(loadIdentity(dataDir)), keys(identity(2)))
})

t.test('with only the old identity set aside, it is the one', async (t) => {
  const dataDir = tempDir()
  saveIdentity(dataDir, identity(1))
  renameSync(identityDir(dataDir), `${identityDir(dataDir)}.previous`)
  t.same(keys(loadIdentity(dataDir)), keys(identity(1)))
})

t.test('an identity saved before sets named the host CAs’ SSH keys takes them with the next set that does', async (t) => {
  const hostCA = createCA('c1 host CA', 'c1')
  const hostCASsh = sshPublicKeyLine(generateKeyPairSync('ed25519').publicKey, 'c1 host CA')
  const dataDir = tempDir()
  const before = { ...identity(7), hostCAPems: [hostCA.certPem] }
  saveIdentity(dataDir, before)
  // identity.json as the previous version wrote it: no host_ca_ssh_keys.
  const metaFile = join(identityDir(dataDir), 'identity.json')
  const meta = JSON.parse(readFileSync(metaFile, 'utf8')) as Record<string, unknown>
  t.notOk('host_ca_ssh_keys' in meta, 'an identity without them is saved without them')
  writeFileSync(metaFile, JSON.stringify(meta))
  const loaded = loadIdentity(dataDir)!
  t.equal(loaded.hostCASshKeys, undefined, 'loaded: none (SSH certificates are checked as before them)')
  t.same(loaded.hostCAPems, [hostCA.certPem])

  // The set it holds, as the auth server now signs it: with the keys, at the version held.
  const set = signTrust({ cluster_name: 'c1', version: 7, host_ca_certs: [hostCA.certPem], user_ca_ssh_keys: loaded.userCASshKeys, host_ca_ssh_keys: [hostCASsh] }, [
    { certPem: hostCA.certPem, key: hostCA.key },
  ])
  t.equal(checkTrust(set, { ...loaded, version: loaded.trustVersion }), true, 'the set with the keys is taken')
  applyTrust(loaded, set)
  saveIdentity(dataDir, loaded)
  t.same(JSON.parse(readFileSync(metaFile, 'utf8')).host_ca_ssh_keys, [hostCASsh], 'saved with the identity')
  const reloaded = loadIdentity(dataDir)!
  t.same(reloaded.hostCASshKeys, [hostCASsh], 'and loaded')
  t.equal(reloaded.trustVersion, 7)
  t.equal(checkTrust(set, { ...reloaded, version: reloaded.trustVersion }), false, 'the same set again changes nothing')

  // Keys that do not go one to one with the host CAs on disk are none.
  writeFileSync(metaFile, JSON.stringify({ ...meta, host_ca_ssh_keys: [hostCASsh, hostCASsh] }))
  t.equal(loadIdentity(dataDir)!.hostCASshKeys, undefined, 'a list that does not match the host CAs is dropped')
})

t.test('assigned labels signed by a trusted host CA for this host are taken, saved and loaded', async (t) => {
  const hostCA = createCA('c1 host CA', 'c1')
  const signers = [{ certPem: hostCA.certPem, key: hostCA.key }]
  const dataDir = tempDir()
  const node = { ...identity(1), hostCAPems: [hostCA.certPem] }
  saveIdentity(dataDir, node)
  const metaFile = join(identityDir(dataDir), 'identity.json')
  t.notOk('assigned_labels' in JSON.parse(readFileSync(metaFile, 'utf8')), 'none held: none saved')
  t.equal(loadIdentity(dataDir)!.assignedLabels, undefined)

  t.equal(acceptAssignedLabels(node, undefined), false, 'an answer without them changes nothing')
  const statement = signAssignedLabels({ cluster_name: 'c1', host_id: 'host-1', labels: { env: 'lab', site: 'north' }, changed: 1000 }, signers)
  t.equal(acceptAssignedLabels(node, statement), true)
  t.same(node.assignedLabels, { labels: { env: 'lab', site: 'north' }, changed: 1000 })
  saveIdentity(dataDir, node)
  t.same(JSON.parse(readFileSync(metaFile, 'utf8')).assigned_labels, { labels: { env: 'lab', site: 'north' }, changed: 1000 }, 'saved in identity.json')
  const loaded = loadIdentity(dataDir)!
  t.same(loaded.assignedLabels, node.assignedLabels, 'and loaded: a restart judges by them')
  t.equal(acceptAssignedLabels(loaded, statement), false, 'the same statement again changes nothing')

  // Removed: an empty set, newer.
  t.equal(acceptAssignedLabels(loaded, signAssignedLabels({ cluster_name: 'c1', host_id: 'host-1', labels: {}, changed: 2000 }, signers)), true)
  saveIdentity(dataDir, loaded)
  t.same(loadIdentity(dataDir)!.assignedLabels, { labels: {}, changed: 2000 }, 'an empty set is held, and newer ones than it only are taken')
})

t.test('assigned labels not for this host, not signed by a CA it trusts, or no newer, change nothing', async (t) => {
  const hostCA = createCA('c1 host CA', 'c1')
  const stranger = createCA('c1 host CA', 'c1')
  const signers = [{ certPem: hostCA.certPem, key: hostCA.key }]
  const held = { labels: { env: 'lab' }, changed: 5000 }
  const node = { ...identity(1), hostCAPems: [hostCA.certPem], assignedLabels: held }
  const statement = (fields: Partial<{ cluster_name: string; host_id: string; labels: Record<string, string>; changed: number }>, by = signers) =>
    signAssignedLabels({ cluster_name: 'c1', host_id: 'host-1', labels: { env: 'prod' }, changed: 6000, ...fields }, by)
  const refused = (s: ReturnType<typeof statement>, reason: RegExp, message: string) => {
    t.throws(() => acceptAssignedLabels(node, s), AssignedLabelsRefused, message)
    t.throws(() => acceptAssignedLabels(node, s), reason, message)
    t.same(node.assignedLabels, held, `${message}: nothing changed`)
  }
  refused(statement({ host_id: 'host-2' }), /for host host-2/, "another host's")
  refused(statement({ cluster_name: 'c2' }), /for cluster "c2"/, "another cluster's")
  refused(statement({}, [{ certPem: stranger.certPem, key: stranger.key }]), /no host CA this node trusts/, 'signed by a key it does not trust')
  const genuine = statement({})
  refused({ ...genuine, labels: { env: 'prod', admin: 'yes' } }, /no host CA this node trusts/, 'changed under its signature')
  refused({ ...genuine, changed: 9000 }, /no host CA this node trusts/, 'its time changed under its signature')
  t.equal(acceptAssignedLabels(node, statement({ changed: 4000 })), false, 'an older one is not taken')
  t.equal(acceptAssignedLabels(node, statement({ changed: 5000 })), false, 'nor one as old')
  t.same(node.assignedLabels, held)
  t.equal(acceptAssignedLabels(node, genuine), true, 'the genuine newer one is')
  t.same(node.assignedLabels, { labels: { env: 'prod' }, changed: 6000 })
})

t.test('identity.json without assigned labels, or with ones not as saved, loads without them', async (t) => {
  const dataDir = tempDir()
  saveIdentity(dataDir, { ...identity(3), assignedLabels: { labels: { env: 'lab' }, changed: 1 } })
  const metaFile = join(identityDir(dataDir), 'identity.json')
  const meta = JSON.parse(readFileSync(metaFile, 'utf8')) as Record<string, unknown>
  for (const bad of [undefined, null, 'env=lab', { labels: { env: 'lab' } }, { labels: { env: 1 }, changed: 1 }, { labels: ['env'], changed: 1 }]) {
    writeFileSync(metaFile, JSON.stringify({ ...meta, assigned_labels: bad }))
    const loaded = loadIdentity(dataDir)
    t.same(keys(loaded), keys(identity(3)), `${JSON.stringify(bad)}: the identity loads`)
    t.equal(loaded?.assignedLabels, undefined, `${JSON.stringify(bad)}: without assigned labels`)
  }
})
