// The identity on disk across a crash in the middle of a save: always one whole identity,
// never the files of two.

import { generateKeyPairSync } from 'node:crypto'
import { cpSync, existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { tempDir } from '../test/helpers/cluster.ts'
import { applyTrust, identityDir, identityExists, loadIdentity, type NodeIdentity, saveIdentity } from './identity-store.ts'
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
