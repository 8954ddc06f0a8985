import { generateKeyPairSync } from 'node:crypto'
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import t from 'tap'
import { forgetPendingJoinKeys, loadPendingJoinKeys, pendingJoinKeysPath, savePendingJoinKeys } from './pending-join-keys.ts'

const keys = () => ({ tls: generateKeyPairSync('ec', { namedCurve: 'P-256' }), ssh: generateKeyPairSync('ed25519') })
const spki = (key: { export(options: { format: 'der'; type: 'spki' }): Buffer }) => key.export({ format: 'der', type: 'spki' }).toString('base64')

t.test("a join's keys are kept for its repeat, per role, readable by the owner only", async (t) => {
  const dir = t.testdir()
  t.equal(loadPendingJoinKeys(dir, 'node'), undefined, 'none before a join')
  const saved = keys()
  savePendingJoinKeys(dir, 'node', saved)
  t.equal(statSync(pendingJoinKeysPath(dir, 'node')).mode & 0o777, 0o600)
  const loaded = loadPendingJoinKeys(dir, 'node')!
  t.equal(spki(loaded.tls.publicKey), spki(saved.tls.publicKey), 'the same TLS key')
  t.equal(spki(loaded.ssh.publicKey), spki(saved.ssh.publicKey), 'the same SSH key')
  t.equal(loadPendingJoinKeys(dir, 'proxy'), undefined, "a proxy's are its own")
  t.not(pendingJoinKeysPath(dir, 'proxy'), pendingJoinKeysPath(dir, 'node'))
  forgetPendingJoinKeys(dir, 'node')
  t.notOk(existsSync(pendingJoinKeysPath(dir, 'node')), 'gone once the identity is stored')
  forgetPendingJoinKeys(dir, 'node')
})

t.test('a file that does not hold two usable keys is no pending join', async (t) => {
  const dir = t.testdir()
  const path = pendingJoinKeysPath(dir, 'node')
  savePendingJoinKeys(dir, 'node', keys())
  const [tls] = readFileSync(path, 'utf8').match(/-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----\n/g)!
  writeFileSync(path, tls)
  t.equal(loadPendingJoinKeys(dir, 'node'), undefined, 'one key only')
  writeFileSync(path, tls + tls)
  t.equal(loadPendingJoinKeys(dir, 'node'), undefined, 'an SSH key that is not Ed25519')
  writeFileSync(path, '-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n'.repeat(2))
  t.equal(loadPendingJoinKeys(dir, 'node'), undefined, 'keys that do not parse')
})
