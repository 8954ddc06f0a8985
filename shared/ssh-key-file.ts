// Ed25519 private keys in OpenSSH's own file format ("openssh-key-v1", unencrypted), the
// form that `ssh -i` and ssh2 read. node:crypto exports only PKCS#8, so we encode it.

import { createPrivateKey, type KeyObject, randomBytes } from 'node:crypto'
import { SshReader, sshString, uint32 } from './ssh-wire.ts'

export function openSshPrivateKey(key: KeyObject | string, comment = ''): string {
  const privateKey = typeof key === 'string' ? createPrivateKey(key) : key
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error('only Ed25519 keys can be written in OpenSSH format here')
  const jwk = privateKey.export({ format: 'jwk' })
  const seed = Buffer.from(jwk.d as string, 'base64url')
  const pub = Buffer.from(jwk.x as string, 'base64url')
  const publicBlob = Buffer.concat([sshString('ssh-ed25519'), sshString(pub)])
  const check = randomBytes(4)
  let secret = Buffer.concat([check, check, sshString('ssh-ed25519'), sshString(pub), sshString(Buffer.concat([seed, pub])), sshString(comment)])
  const padding = Buffer.from(Array.from({ length: (8 - (secret.length % 8)) % 8 }, (_, i) => i + 1))
  secret = Buffer.concat([secret, padding])
  const body = Buffer.concat([Buffer.from('openssh-key-v1\0'), sshString('none'), sshString('none'), sshString(''), uint32(1), sshString(publicBlob), sshString(secret)])
  const lines = body.toString('base64').match(/.{1,70}/g) ?? []
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${lines.join('\n')}\n-----END OPENSSH PRIVATE KEY-----\n`
}

/** The Ed25519 private key in an unencrypted OpenSSH key file (as openSshPrivateKey writes it, and `ssh-keygen -N ''`). */
export function readOpenSshPrivateKey(text: string): KeyObject {
  const body = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/.exec(text)?.[1]
  if (body === undefined) throw new Error('not an OpenSSH private key file')
  const bytes = Buffer.from(body.replace(/\s+/g, ''), 'base64')
  const magic = Buffer.from('openssh-key-v1\0')
  if (!bytes.subarray(0, magic.length).equals(magic)) throw new Error('not an OpenSSH private key file')
  const reader = new SshReader(bytes.subarray(magic.length), 'the OpenSSH private key')
  if (reader.readText() !== 'none' || reader.readText() !== 'none') throw new Error('the OpenSSH private key is encrypted: warren reads only unencrypted ones')
  reader.readString() // KDF options: none
  if (reader.readUint32() !== 1) throw new Error('the OpenSSH key file must hold exactly one key')
  reader.readString() // the public key, repeated in the private section
  const secret = new SshReader(reader.readString(), 'the OpenSSH private key')
  const check = secret.readUint32()
  if (secret.readUint32() !== check) throw new Error('the OpenSSH private key is damaged (its check numbers differ)')
  if (secret.readText() !== 'ssh-ed25519') throw new Error('only Ed25519 OpenSSH keys are read here')
  const pub = secret.readString()
  const pair = secret.readString()
  if (pub.length !== 32 || pair.length !== 64) throw new Error('the OpenSSH Ed25519 key has the wrong length')
  return createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d: pair.subarray(0, 32).toString('base64url'), x: pub.toString('base64url') }, format: 'jwk' })
}
