import { execFileSync } from 'node:child_process'
import { createPublicKey, generateKeyPairSync } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { sshPublicKeyLine } from './ssh-cert.ts'
import { openSshPrivateKey, readOpenSshPrivateKey } from './ssh-key-file.ts'

t.test('ssh-keygen reads the key and derives the same public key', (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const file = join(t.testdir(), 'id_ed25519')
  writeFileSync(file, openSshPrivateKey(privateKey, 'tester'), { mode: 0o600 })
  const derived = execFileSync('ssh-keygen', ['-y', '-f', file], { encoding: 'utf8' }).trim()
  t.equal(derived.split(' ').slice(0, 2).join(' '), sshPublicKeyLine(publicKey).split(' ').slice(0, 2).join(' '))
  t.throws(() => openSshPrivateKey(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey), /only Ed25519/)
  t.end()
})

t.test("a key file is read back: ours, and ssh-keygen's own; others are refused by what they are", (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const ours = readOpenSshPrivateKey(openSshPrivateKey(privateKey, 'tester'))
  t.equal(sshPublicKeyLine(createPublicKey(ours)), sshPublicKeyLine(publicKey))
  const file = join(t.testdir(), 'id_keygen')
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'keygen', '-f', file])
  const theirs = readOpenSshPrivateKey(readFileSync(file, 'utf8'))
  t.equal(sshPublicKeyLine(createPublicKey(theirs)).split(' ').slice(0, 2).join(' '), readFileSync(`${file}.pub`, 'utf8').split(' ').slice(0, 2).join(' '))
  const encrypted = join(t.testdir(), 'id_encrypted')
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'secret', '-f', encrypted])
  t.throws(() => readOpenSshPrivateKey(readFileSync(encrypted, 'utf8')), /encrypted/)
  const rsa = join(t.testdir(), 'id_rsa')
  execFileSync('ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-f', rsa])
  t.throws(() => readOpenSshPrivateKey(readFileSync(rsa, 'utf8')), /only Ed25519/)
  t.throws(() => readOpenSshPrivateKey('hello'), /not an OpenSSH private key/)
  t.end()
})
