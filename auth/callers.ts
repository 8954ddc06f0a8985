// Who is calling the auth API, from the TLS client certificate of the connection: a host
// of this cluster (host CA), its admin (user CA, admin role), or nobody. Judged again at
// every request, not once per connection: a keep-alive connection keeps only what its
// certificate still grants. The verdict is kept until the certificate's dates or the
// trusted CAs could change it; when the CAs change, connections whose certificate no
// longer grants anything are closed. A host removed or locked is refused at every request
// too (resumed TLS sessions included), and its open connections are closed when that happens.

import { X509Certificate } from 'node:crypto'
import type { TLSSocket } from 'node:tls'
import type { Access } from '../shared/access.ts'
import { accessOfX509Certificate, generationOfX509Certificate } from '../shared/access-cert.ts'
import { type CertSubject, certSubject, issuedByAny, validNow } from '../shared/cert-subject.ts'
import { EXPIRED, judgeCertificate, VerdictCache } from '../shared/cert-trust.ts'
import type { Logger } from '../shared/log.ts'
import { type UserCertificate, userCertificate } from '../shared/revocation-list.ts'

/**
 * Who a request is from: a host, the local admin identity, or a person logged in, whom a
 * proxy vouches for (`via`, the proxy's host ID) with the user's certificate, and what
 * that certificate's roles allow (`access`).
 */
export type Peer =
  | { kind: 'host' | 'admin'; subject: CertSubject }
  /** `generation`: the user generation the certificate carries (shared/access-cert.ts), if any. */
  | { kind: 'user'; subject: CertSubject; via: string; admin: boolean; access: Access; generation?: string }

/** A certificate in a header: a few kilobytes at most (Node's headers stop at 16 KiB anyway). */
const MAX_USER_CERT_HEADER = 8192

/** A connection's certificate judged: who it authenticates, or why nobody. */
export interface Judged {
  peer: Peer | null
  reason?: string
}

export interface CallersOptions {
  clusterName: () => string
  hostCAPems: () => string[]
  userCAPems: () => string[]
  /**
   * CAs besides the user CA whose certificates are the local admin identity, and nothing else
   * (auth/own-credentials.ts: the user CA's stand-in while it has expired and early in the
   * rotation that replaces it).
   */
  adminCAPems?: () => string[]
  /** Why a host is refused although its certificate is valid (removed, locked), or undefined. */
  refusedHost: (hostId: string) => string | undefined
  /** Why a user's certificate is refused although it is valid (the user removed or locked, or its certificates from before a reset), or undefined. */
  refusedUser: (user: string | UserCertificate) => string | undefined
  log: Logger
  /** For tests: the clock certificates' dates are judged by. */
  clock?: () => number
}

export class Callers {
  private readonly options: CallersOptions
  private readonly clock: () => number
  private readonly verdicts: VerdictCache<TLSSocket, Judged>
  /** Connections that authenticated someone, until they close: judged again when the CAs change. */
  private readonly authenticated = new Set<TLSSocket>()

  constructor(options: CallersOptions) {
    this.options = options
    this.clock = options.clock ?? Date.now
    this.verdicts = new VerdictCache(this.clock)
  }

  /** Who is calling on `socket` now; nobody for anonymous callers. */
  judge(socket: TLSSocket): Judged {
    const cert = socket.authorized ? socket.getPeerX509Certificate() : undefined
    if (!cert) return { peer: null }
    const identified = this.verdicts.get(socket, cert, (now) => this.identify(cert, now))
    // Outside the cache: a removal or a lock applies at once, and a lock that ends, too.
    const refusal = identified.peer?.kind === 'host' ? this.options.refusedHost(identified.peer.subject.commonName) : undefined
    const judged = refusal ? { peer: null, reason: refusal } : identified
    if (judged.peer && !this.authenticated.has(socket)) {
      this.authenticated.add(socket)
      socket.once('close', () => this.authenticated.delete(socket))
    }
    return judged
  }

  /**
   * The user a proxy vouches for on its request, judged as its certificate stands now: from
   * a user CA of this cluster, within its dates, and not removed or locked. The proxy
   * checked that the user holds the certificate's key (its TLS handshake); what the user may
   * do is the access the certificate carries. Only a proxy's word is taken: see forwardedUser.
   */
  judgeForwardedUser(proxy: Peer, certBase64: string): Judged {
    let cert: X509Certificate
    try {
      if (certBase64.length > MAX_USER_CERT_HEADER) throw new Error('too long')
      cert = new X509Certificate(Buffer.from(certBase64, 'base64'))
    } catch {
      return { peer: null, reason: 'the user certificate the proxy forwarded is malformed' }
    }
    const verdict = judgeCertificate(cert, { clusterName: this.options.clusterName(), caPems: this.options.userCAPems(), role: 'user' }, this.clock())
    if (!verdict.trusted) return { peer: null, reason: `user certificate: ${verdict.reason}` }
    const name = verdict.subject.commonName
    const refusal = this.options.refusedUser(userCertificate(cert))
    if (refusal) return { peer: null, reason: refusal }
    try {
      const access = accessOfX509Certificate(cert)
      const generation = generationOfX509Certificate(cert)
      return { peer: { kind: 'user', subject: verdict.subject, via: proxy.subject.commonName, admin: access.admin, access, ...(generation ? { generation } : {}) } }
    } catch {
      return { peer: null, reason: `the access in the certificate of user "${name}" is malformed` }
    }
  }

  /** After the trusted CAs changed: every verdict is made again, and connections that lost theirs are closed. */
  trustChanged(): void {
    this.verdicts.invalidate()
    this.closeRefused()
  }

  /** After a removal or a lock: the connections of hosts now refused are closed (verdicts on certificates stand). */
  revocationsChanged(): void {
    this.closeRefused()
  }

  private closeRefused(): void {
    for (const socket of this.authenticated) {
      const judged = this.judge(socket)
      if (judged.peer) continue
      this.authenticated.delete(socket)
      this.options.log.warn(`connection from ${socket.remoteAddress} closed: ${judged.reason}`)
      socket.destroy()
    }
  }

  /**
   * What a client certificate grants now. The dates are checked here too, since a resumed
   * TLS session skips OpenSSL's checks.
   */
  private identify(cert: X509Certificate, nowMs: number): Judged {
    if (!validNow(cert, nowMs)) return { peer: null, reason: EXPIRED }
    const subject = certSubject(cert)
    if (subject.cluster !== this.options.clusterName()) return { peer: null, reason: 'the certificate is from another cluster' }
    if (issuedByAny(cert, this.options.hostCAPems())) return { peer: { kind: 'host', subject } }
    if (!issuedByAny(cert, [...this.options.userCAPems(), ...(this.options.adminCAPems?.() ?? [])]))
      return { peer: null, reason: 'the certificate is not from a CA this cluster trusts' }
    if (!subject.roles.includes('admin')) return { peer: null, reason: 'not an admin certificate' }
    return { peer: { kind: 'admin', subject } }
  }
}
