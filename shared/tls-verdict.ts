// What TLS said of a server's certificate: whether a failure means its CA is not one this host
// trusts (a host CA rotation it missed, which trust bridges get a node or a proxy across),
// and the verdict of a handshake made only to read it.

import type { X509Certificate } from 'node:crypto'
import { connect } from 'node:tls'
import { parseHostPort } from './address.ts'
import { DEFAULTS } from './config.ts'
import { CLUSTER_SERVER_NAME } from './protocol/tunnel.ts'

/**
 * OpenSSL's verdicts on a peer whose certificate does not chain to a CA this host trusts
 * (after a host CA rotation it missed: the trust bridge follows), as opposed to one of time.
 */
const UNTRUSTED_ISSUER = [
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
]

/** Whether `code` (a TLS verification verdict) says the peer's CA is not one this host trusts. */
export function untrustedIssuerCode(code: string | undefined): boolean {
  return code !== undefined && UNTRUSTED_ISSUER.includes(code)
}

/**
 * Whether a failed connection failed because the peer's certificate is from a CA this host
 * does not trust: by the error's code, or the code the API client names in its message.
 */
export function untrustedPeerOfError(error: unknown): boolean {
  const { code, cause, message } = (error ?? {}) as { code?: string; cause?: { code?: string }; message?: string }
  if (untrustedIssuerCode(code) || untrustedIssuerCode(cause?.code)) return true
  return typeof message === 'string' && UNTRUSTED_ISSUER.some((name) => message.includes(name))
}

/**
 * The TLS verdict on the certificate `server` (a proxy's web port or the auth server) presents,
 * judged against `caPems`: its code (undefined when it verifies) and the certificate.
 * Undefined when it cannot be reached.
 */
export function probeServerCertificate(server: string, caPems: string[], timeoutMs = 10_000): Promise<{ code?: string; cert: X509Certificate } | undefined> {
  const { host, port } = parseHostPort(server, DEFAULTS.webPort)
  return new Promise((resolve) => {
    // Nothing is sent: the handshake alone shows the certificate, and its verdict is read, not enforced.
    const socket = connect({ host, port, servername: CLUSTER_SERVER_NAME, ca: caPems, rejectUnauthorized: false })
    const done = (result?: { code?: string; cert: X509Certificate }) => {
      clearTimeout(timer)
      socket.destroy()
      resolve(result)
    }
    const timer = setTimeout(() => done(), timeoutMs)
    socket.once('error', () => done())
    socket.once('secureConnect', () => {
      const code = (socket.authorizationError as unknown as string | null) ?? undefined
      const cert = socket.getPeerX509Certificate()
      done(cert && { code, cert })
    })
  })
}
