// Ed25519 private keys in OpenSSH's own file format ("openssh-key-v1", unencrypted), the
// form that `ssh -i` and ssh2 read. node:crypto exports only PKCS#8, so we encode it.

import { createPrivateKey, type KeyObject, randomBytes } from 'node:crypto'
import { sshString, uint32 } from './ssh-wire.ts'

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
