// The plain SSH stream: a user connection to a proxy that carries a node's SSH bytes without
// TLS around them, so that OpenSSH's `ssh` can talk to the proxy's socket itself
// (ProxyUseFdpass) and the proxy only copies bytes that SSH already encrypts and
// authenticates end to end. What comes before those bytes is a short handshake of its own:
//
//   client → proxy   SSH_STREAM_MAGIC
//   proxy  → client  hello: a challenge made for this connection, an ephemeral X25519 key,
//                    the proxy's certificate and its signature of both
//   client → proxy   the client's ephemeral X25519 key and, sealed with a key derived from
//                    both (AES-256-GCM), the request: node, user certificate, and the user
//                    key's signature of the challenge, the proxy's ephemeral key and node
//   proxy  → client  the dial reply, sealed the same way
//
// then the node's SSH stream, which the proxy starts sending once the client's first SSH
// byte arrives (so the reply is the last thing the client reads before it hands the socket
// on). The client checks the proxy against the cluster's host CA before it shows anything;
// the proxy checks the user's certificate and its key before any byte reaches a node; who
// the user is and which node it asks for never cross the network readable. Every primitive
// is Node's (OpenSSL's). SECURITY.md gives the argument.

import { generateKeyPairSync, type KeyObject, randomBytes, sign, verify, X509Certificate } from 'node:crypto'
import { type Expected, judgeCertificate } from '../cert-trust.ts'
import { exchangeKeys, openJson, rawX25519, sealJson } from '../sealed-box.ts'
import { type DialReply, parseDialReply } from './dial.ts'
import { object, optional, parseWith, text } from './shape.ts'

/** The client's first line: the proxy's listener tells this protocol from TLS and HTTP by it. */
export const SSH_STREAM_MAGIC = 'WARREN-SSH-STREAM/2\n'

/** Random bytes in a challenge: never repeated, so a signature is good for one connection. */
const CHALLENGE_BYTES = 32

/** Room for a certificate whose roles carry many labels. */
const CERTIFICATE_MAX = 48 * 1024

const HELLO = object({
  challenge: text({ max: 64 }),
  /** The proxy's ephemeral X25519 public key (JWK "x", base64url). */
  key: text({ max: 64 }),
  /** The proxy's host certificate (DER, base64). */
  certificate: text({ max: CERTIFICATE_MAX }),
  /** The proxy host key's signature of the challenge and its ephemeral key. */
  signature: text({ max: 1024 }),
})

const SEALED = object({
  /** The sender's ephemeral X25519 public key, in the request only. */
  key: optional(text({ max: 64 })),
  sealed: text({ max: 2 * CERTIFICATE_MAX }),
})

const REQUEST = object({
  node: text({ max: 256 }),
  /** The user's X.509 certificate (DER, base64). */
  certificate: text({ max: CERTIFICATE_MAX }),
  /** The user key's signature of the challenge, the proxy's ephemeral key and node. */
  signature: text({ max: 1024 }),
})

export type SshStreamHello = { challenge: string; key: string; certificate: string; signature: string }
export type SshStreamSealed = { key?: string; sealed: string }
export type SshStreamRequest = { node: string; certificate: string; signature: string }

export const parseSshStreamHello = (value: unknown): SshStreamHello => parseWith('stream hello', HELLO, value, 'the hello: ')
export const parseSshStreamSealed = (value: unknown): SshStreamSealed => parseWith('sealed message', SEALED, value, 'the sealed message: ')

/** Ed25519 and Ed448 sign the message itself; other key types a SHA-256 digest of it. */
function digestFor(key: KeyObject): string | null {
  return key.asymmetricKeyType === 'ed25519' || key.asymmetricKeyType === 'ed448' ? null : 'sha256'
}

/** What each side signs: a purpose of its own (no key signs anything else this way) and what binds the signature to this connection. */
const proxySigned = (challenge: Buffer, key: string) => Buffer.concat([Buffer.from('warren ssh stream v2 proxy\0'), challenge, Buffer.from(key)])
/**
 * The user signs the proxy's ephemeral key too: a proxy that passed another proxy's challenge
 * on under its own key (one removed, but whose certificate clients still trust) could open the
 * request and seal it again for the real proxy; the real proxy finds its own key missing.
 */
const userSigned = (challenge: Buffer, proxyKey: string, node: string) =>
  Buffer.concat([Buffer.from('warren ssh stream v2 user\0'), challenge, Buffer.from(`${proxyKey}\0${node}`)])

/** The request key and the reply key: from the X25519 secret, the challenge and both public keys. */
function sessionKeys(privateKey: KeyObject, peer: string, challenge: Buffer, clientKey: string, proxyKey: string): { request: Buffer; reply: Buffer } {
  return exchangeKeys(privateKey, peer, challenge, `warren ssh stream v2\0${clientKey}\0${proxyKey}`)
}

/** What a message sealed for this connection holds. */
const open = (key: Buffer, sealed: string) => openJson(key, sealed, 'the sealed message does not open with this connection’s key')

/** The proxy's side, one per connection. */
export class ProxyHandshake {
  readonly challenge = randomBytes(CHALLENGE_BYTES)
  readonly #ephemeral = generateKeyPairSync('x25519')
  #replyKey: Buffer | undefined

  /** The hello, signed with the proxy's host key. */
  hello(proxyCert: X509Certificate, proxyKey: KeyObject): SshStreamHello {
    const key = rawX25519(this.#ephemeral.publicKey)
    const signature = sign(digestFor(proxyKey), proxySigned(this.challenge, key), proxyKey).toString('base64')
    return { challenge: this.challenge.toString('base64'), key, certificate: proxyCert.raw.toString('base64'), signature }
  }

  /** The request inside `message`, and the user's certificate; throws why it cannot be read. */
  openRequest(message: SshStreamSealed): { request: SshStreamRequest; cert: X509Certificate } {
    if (!message.key) throw new Error("the request lacks the client's key")
    const keys = sessionKeys(this.#ephemeral.privateKey, message.key, this.challenge, message.key, rawX25519(this.#ephemeral.publicKey))
    const request = parseWith('stream request', REQUEST, open(keys.request, message.sealed), 'the request: ')
    // Only a client that sealed the request holds the reply key; before, refusals go plain.
    this.#replyKey = keys.reply
    let cert: X509Certificate
    try {
      cert = new X509Certificate(Buffer.from(request.certificate, 'base64'))
    } catch {
      throw new Error('the certificate cannot be read')
    }
    return { request, cert }
  }

  /** Whether the request's signature is its certificate key's, of this connection's challenge and key and the node asked for. */
  signedByHolder(request: SshStreamRequest, cert: X509Certificate): boolean {
    try {
      const signed = userSigned(this.challenge, rawX25519(this.#ephemeral.publicKey), request.node)
      return verify(digestFor(cert.publicKey), signed, cert.publicKey, Buffer.from(request.signature, 'base64'))
    } catch {
      return false
    }
  }

  /** The reply, sealed when the request could be opened (plain before that: there is no key yet). */
  reply(reply: DialReply): SshStreamSealed | DialReply {
    return this.#replyKey ? { sealed: sealJson(this.#replyKey, reply) } : reply
  }
}

/** The client's side: checks the hello against the cluster's host CA, then seals the request. */
export class ClientHandshake {
  readonly #ephemeral = generateKeyPairSync('x25519')
  #replyKey: Buffer | undefined

  /** The sealed request for `node`, signed with the user's key; throws when the hello is not a proxy's of this cluster. */
  request(hello: SshStreamHello, expected: Omit<Expected, 'role'>, node: string, userCert: X509Certificate, userKey: KeyObject): SshStreamSealed {
    const challenge = Buffer.from(hello.challenge, 'base64')
    if (challenge.length !== CHALLENGE_BYTES) throw new Error(`the challenge is not ${CHALLENGE_BYTES} bytes`)
    const proxyCert = new X509Certificate(Buffer.from(hello.certificate, 'base64'))
    const verdict = judgeCertificate(proxyCert, { ...expected, role: 'proxy' })
    if (!verdict.trusted) throw new Error(`not a proxy of this cluster: ${verdict.reason}`)
    if (!verify(digestFor(proxyCert.publicKey), proxySigned(challenge, hello.key), proxyCert.publicKey, Buffer.from(hello.signature, 'base64'))) {
      throw new Error("the hello is not signed by the proxy certificate's key")
    }
    const key = rawX25519(this.#ephemeral.publicKey)
    const keys = sessionKeys(this.#ephemeral.privateKey, hello.key, challenge, key, hello.key)
    this.#replyKey = keys.reply
    const signature = sign(digestFor(userKey), userSigned(challenge, hello.key, node), userKey).toString('base64')
    return { key, sealed: sealJson(keys.request, { node, certificate: userCert.raw.toString('base64'), signature } satisfies SshStreamRequest) }
  }

  /** The proxy's reply: sealed once it opened the request; a refusal before that comes plain, an acceptance never. */
  reply(value: unknown): DialReply {
    if (typeof value === 'object' && value !== null && 'sealed' in value && this.#replyKey) return parseDialReply(open(this.#replyKey, parseSshStreamSealed(value).sealed))
    const reply = parseDialReply(value)
    if (reply.ok) throw new Error('the proxy accepted the request without sealing its reply')
    return reply
  }
}
