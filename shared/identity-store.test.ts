// The identity on disk across a crash in the middle of a save: always one whole identity,
// never the files of two.

import { cpSync, existsSync, renameSync, rmSync } from 'node:fs'
import t from 'tap'
import { tempDir } from '../test/helpers/cluster.ts'
import { identityDir, identityExists, loadIdentity, type NodeIdentity, saveIdentity } from './identity-store.ts'

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
