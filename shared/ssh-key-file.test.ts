import { execFileSync } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { sshPublicKeyLine } from './ssh-cert.ts'
import { openSshPrivateKey } from './ssh-key-file.ts'

t.test('ssh-keygen reads the key and derives the same public key', (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const file = join(t.testdir(), 'id_ed25519')
  writeFileSync(file, openSshPrivateKey(privateKey, 'tester'), { mode: 0o600 })
  const derived = execFileSync('ssh-keygen', ['-y', '-f', file], { encoding: 'utf8' }).trim()
  t.equal(derived.split(' ').slice(0, 2).join(' '), sshPublicKeyLine(publicKey).split(' ').slice(0, 2).join(' '))
  t.throws(() => openSshPrivateKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey), /only Ed25519/)
  t.end()
})
