// The web terminal's SSH client: a shell with a pty on a node, over a stream the proxy
// opened to the node's SSH server (through its tunnel, or directly: both TLS-verified
// against the host CA). The client authenticates as `warren login`'s certificate does: a
// fresh Ed25519 key made for this one terminal and a short-lived OpenSSH certificate of
// the user for it, which the node verifies and judges itself (and audits and records the
// session as for `ssh`). The node's host key must be the one the cluster registered for it.
// ssh2 is loaded on first use: a part of its own in the single executable.

import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import type { Duplex } from 'node:stream'
import type { ClientChannel, ParsedKey, PublicKeyAuthMethod } from 'ssh2'
import { openSshPrivateKey } from '../../shared/ssh-key-file.ts'

/** ssh2 names the key by the type it states: a certificate's is the certificate's type. */
const CERT_TYPE = 'ssh-ed25519-cert-v01@openssh.com'
/** The node's SSH server must answer within this time: the person waits on it. */
const READY_TIMEOUT_MS = 20_000

export interface ShellRequest {
  stream: Duplex
  login: string
  /** The key the certificate is for, and the certificate ("ssh-ed25519-cert-v01@openssh.com AAAA..."). */
  privateKey: KeyObject
  certificate: string
  /** The node's registered SSH host key blob. */
  hostKey: Buffer
  cols: number
  rows: number
}

export interface Shell {
  channel: ClientChannel
  /** Closes the channel and the connection. */
  end(): void
}

/** A key pair for one terminal. */
export function terminalKey(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('ed25519')
}

export async function openShell(request: ShellRequest): Promise<Shell> {
  const { default: ssh2 } = await import('ssh2')
  const parsed = ssh2.utils.parseKey(openSshPrivateKey(request.privateKey))
  if (parsed instanceof Error) throw parsed
  const blob = Buffer.from(request.certificate.trim().split(/\s+/)[1] ?? '', 'base64')
  // The private key signs; the certificate is what the server is shown as the public key.
  const certified: ParsedKey = Object.create(parsed, { type: { value: CERT_TYPE }, getPublicSSH: { value: () => blob } })
  const auth: PublicKeyAuthMethod = { type: 'publickey', username: request.login, key: certified }
  let tried = false
  const client = new ssh2.Client()
  return new Promise<Shell>((resolve, reject) => {
    const fail = (error: Error) => {
      client.end()
      reject(error)
    }
    // Every error of the node's stream, the first and any after it (a reset after a bad
    // packet), is heard: one unheard would take the proxy down. After the first, the promise
    // is settled and the rest are nothing to act on.
    client.on('error', fail)
    // The stream's own errors after ssh2 let go of it (a reset once the client ended) are nothing to act on either.
    request.stream.on('error', () => {})
    client.once('ready', () => {
      client.shell({ term: 'xterm-256color', cols: request.cols, rows: request.rows }, (error, channel) => {
        if (error) return fail(error)
        resolve({ channel, end: () => client.end() })
      })
    })
    client.connect({
      sock: request.stream,
      username: request.login,
      // One try: a refusal is final (the node says why in its log and audit trail).
      authHandler: (_methodsLeft, _partial, next) => {
        // ssh2 takes false for "no more methods", which its types do not list.
        next(tried ? (false as unknown as PublicKeyAuthMethod) : auth)
        tried = true
      },
      hostVerifier: (key: Buffer) => key.equals(request.hostKey),
      // No compression: ssh2 frees its zlib state when the stream ends, and a write after that throws outside any handler.
      algorithms: { compress: ['none'] },
      readyTimeout: READY_TIMEOUT_MS,
      keepaliveInterval: 0,
    })
  })
}
