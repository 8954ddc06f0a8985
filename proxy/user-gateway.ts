// Users reach nodes through the proxy: a TLS connection with ALPN `warren-ssh` and a user
// certificate from the user CA, then one JSON line naming the node and service. The proxy
// checks the user before it opens any stream to the node, then splices the bytes. A user
// connection lasts as long as its session, like an SSH session past its certificate's
// expiry, but not past a change of trust: when a user CA rotation drops the CA that
// issued its certificate, or when the user is locked (`warrenctl lock --user`; after
// `users reset`, the certificates issued before it), it is closed, and a locked user's new
// connections are refused with the lock's message.
// The user's roles, carried in the certificate, decide which nodes and forwarded ports it
// reaches: a node or port they do not allow is refused before any stream is opened (the
// node judges the login, and judges again on its own). They are judged again when the
// node's labels change (`warrenctl nodes label`, or the node's own): a connection they no
// longer allow is closed. For a forwarded port the client
// sends its OpenSSH certificate too, which must name the same user, and which the node
// verifies and judges itself (agent/port-access.ts). An SSH connection of a user whose
// roles set max_connections then counts against it, with the user's others through every
// proxy of the cluster (connection-limits.ts): one beyond is refused as a role refuses.

import type { X509Certificate } from 'node:crypto'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { TLSSocket } from 'node:tls'
import { type Access, nodeRefusal, portRefusal } from '../shared/access.ts'
import { accessOfX509Certificate } from '../shared/access-cert.ts'
import { type Expected, judgeCertificate, judgeIdentity, type Verdict } from '../shared/cert-trust.ts'
import type { Logger } from '../shared/log.ts'
import { USER_CERT_HEADER } from '../shared/protocol/api.ts'
import { type DialReply, type DialRequestIn, parseUserDial, type UserDial } from '../shared/protocol/dial.ts'
import { readFirstMessage, writeMessage } from '../shared/protocol/framing.ts'
import { type CertificateCut, type UserCertificate, userCertificate } from '../shared/revocation-list.ts'
import { splice } from '../shared/splice.ts'
import { parseSshCertificate } from '../shared/ssh-cert.ts'
import { AccessDenied, type NodeDialer } from './node-dialer.ts'

export interface UserGatewayOptions {
  /** Reaches a node through its tunnel, or directly; tells its labels now. */
  nodes: Pick<NodeDialer, 'dial' | 'labelsOfHosts'>
  clusterName: string
  userCAPems: () => string[]
  /** Why a user's certificate is refused although it is valid (a lock on the user, or on its certificates from before a reset), or undefined. */
  refusedUser?: (user: string | UserCertificate) => string | undefined
  /** What of a user's certificates is refused now by locks on some of them (`users reset`, `users rm`), for the node to judge its SSH certificate by. */
  certificateCut?: (user: string) => CertificateCut
  log: Logger
}

/** Judges a node by its labels for one user connection: why it is refused, or undefined (a port's refusal is thrown as AccessDenied). */
type Admit = (labels: Record<string, string>) => string | undefined

/** An accepted user connection: the certificate it was accepted by, and once its node was admitted, how to judge it again. */
interface OpenConnection {
  cert: X509Certificate
  user: string
  admitted?: { node: string; hostId: string; admit: Admit }
}

export class UserGateway {
  private readonly options: UserGatewayOptions
  /** Every accepted user connection until it closes. */
  private readonly open = new Map<Socket, OpenConnection>()
  /** Bytes of user connections already closed, from the user and to the user. */
  private readonly closedBytes = { fromUsers: 0, toUsers: 0 }

  constructor(options: UserGatewayOptions) {
    this.options = options
  }

  /** User connections open now (each an SSH session, a port forward or a file copy). */
  get sessions(): number {
    return this.open.size
  }

  /** Bytes relayed between users and nodes since the start, open connections included. */
  relayedBytes(): { fromUsers: number; toUsers: number } {
    const total = { ...this.closedBytes }
    for (const socket of this.open.keys()) {
      total.fromUsers += socket.bytesRead
      total.toUsers += socket.bytesWritten
    }
    return total
  }

  private get expected(): Expected {
    return { clusterName: this.options.clusterName, caPems: this.options.userCAPems(), role: 'user' }
  }

  /**
   * Closes the user connections this proxy no longer trusts, after the trusted user CAs
   * changed: those made with a certificate from a CA that was dropped.
   */
  dropUntrusted(): void {
    for (const [socket, { cert }] of this.open) {
      const verdict = judgeIdentity(cert, this.expected)
      if (verdict.trusted) continue
      this.open.delete(socket)
      this.options.log.warn(`user connection from ${socket.remoteAddress} closed: ${verdict.reason}`)
      socket.destroy()
    }
  }

  /** After a lock: the connections of users now locked are closed, port forwards and all. */
  dropLocked(): void {
    for (const [socket, { cert }] of this.open) {
      const user = userCertificate(cert)
      const refusal = this.options.refusedUser?.(user)
      if (!refusal) continue
      this.open.delete(socket)
      this.options.log.warn(`user connection from ${socket.remoteAddress} closed: ${refusal}`, { user: user.name, locked: true })
      socket.destroy()
    }
  }

  /**
   * After the labels of these hosts changed (assigned by the cluster, or the node's own): the
   * connections to them that the user's roles no longer allow are closed, judged as when
   * they opened. A host no longer found is not judged: its connections end with it.
   */
  async dropRelabelled(hostIds: Iterable<string>): Promise<void> {
    const hosts = new Set(hostIds)
    const affected = [...this.open].flatMap(([socket, { user, admitted }]) => (admitted && hosts.has(admitted.hostId) ? [{ socket, user, ...admitted }] : []))
    const labels = await this.options.nodes.labelsOfHosts(affected.map(({ hostId }) => hostId))
    for (const { socket, user, node, hostId, admit } of affected) {
      const now = labels.get(hostId)
      if (!now || !this.open.has(socket)) continue
      const reason = refusalOf(admit, now)
      if (!reason) continue
      this.open.delete(socket)
      this.options.log.warn(`user connection from ${socket.remoteAddress} to ${node} closed: ${reason}`, { user, node, access_denied: true, reason })
      socket.destroy()
    }
  }

  /** The hosts that user connections open now were admitted to. */
  admittedHosts(): string[] {
    return [...new Set([...this.open.values()].flatMap(({ admitted }) => (admitted ? [admitted.hostId] : [])))]
  }

  /** The user a web request's certificate authenticates (GET /v1/known-hosts); throws why none. */
  userOf(socket: TLSSocket): string {
    const cert = socket.getPeerX509Certificate()
    // Judged like a user connection: the CA, cluster, role and dates, then the locks.
    const verdict = cert ? judgeCertificate(cert, this.expected) : undefined
    if (!cert || !verdict?.trusted) throw new Error(verdict && !verdict.trusted ? verdict.reason : 'no user certificate')
    const locked = this.options.refusedUser?.(userCertificate(cert))
    if (locked) throw new Error(locked)
    return verdict.subject.commonName
  }

  async handle(socket: TLSSocket, remoteAddress: string): Promise<void> {
    const { log } = this.options
    socket.on('error', () => {})
    const cert = socket.authorized ? socket.getPeerX509Certificate() : undefined
    // Judged here, not only by OpenSSL: a resumed TLS session skips its certificate checks.
    const verdict: Verdict | undefined = cert ? judgeCertificate(cert, this.expected) : undefined
    if (!cert || !verdict?.trusted) {
      const reason = socket.authorizationError ?? (verdict && !verdict.trusted ? verdict.reason : 'no valid user certificate')
      log.warn(`user connection from ${remoteAddress} refused: ${reason}`)
      refuse(socket, 'a valid user certificate of this cluster is required')
      return
    }
    let message: UserDial
    try {
      message = await readFirstMessage(socket, parseUserDial)
    } catch (error) {
      refuse(socket, (error as Error).message)
      return
    }
    await this.serve(socket, cert, verdict.subject.commonName, remoteAddress, message)
  }

  /** Judges a user certificate as a user connection's (CA, cluster, role, dates): its user, or why not. */
  judge(cert: X509Certificate): { user: string } | { refused: string } {
    const verdict = judgeCertificate(cert, this.expected)
    return verdict.trusted ? { user: verdict.subject.commonName } : { refused: verdict.reason }
  }

  /**
   * Serves a user connection whose certificate has been verified and whose key has been
   * proven (by the TLS handshake, or by a signed challenge: ssh-stream-gateway.ts): refuses
   * a locked user, checks the roles, opens the stream to the node, answers, then splices.
   * A plain SSH stream answers in its own way (`stream.answer`), and the node's bytes wait
   * for the client's first byte, so the answer is the last thing the client reads before
   * it hands the socket on.
   */
  async serve(socket: Socket, cert: X509Certificate, user: string, remoteAddress: string, message: UserDial, plain?: { answer: (reply: DialReply) => void }): Promise<void> {
    const { log } = this.options
    const answer = plain?.answer ?? ((reply: DialReply) => writeMessage<DialReply>(socket, reply))
    const refuse = (error: string) => {
      answer({ ok: false, error })
      // Closed whole once the answer is out: half-open, a client that never closes its side would hold it for good.
      socket.destroySoon()
    }
    const locked = this.options.refusedUser?.(userCertificate(cert))
    if (locked) {
      log.warn(`user connection from ${remoteAddress} refused: ${locked}`, { user, locked: true })
      refuse(locked)
      return
    }
    const connection: OpenConnection = { cert, user }
    this.open.set(socket, connection)
    socket.once('close', () => {
      this.open.delete(socket)
      this.closedBytes.fromUsers += socket.bytesRead
      this.closedBytes.toUsers += socket.bytesWritten
    })
    const node = message.node
    const request: DialRequestIn = { service: message.service, name: message.name, client: `${user}@${remoteAddress}` }
    if (message.service === 'ssh') {
      // The node logs in no one else on this stream, nor this user's locked certificates (shared/protocol/dial.ts).
      request.user = user
      const cut = this.options.certificateCut?.(user)
      if (cut) {
        request.valid_from = cut.validFrom
        request.refused_generations = cut.generations
        request.generation_valid_from = cut.generationValidFrom
      }
    }
    if (message.service === 'port') {
      request.certificate = message.certificate
      request.proof = message.proof
    }
    let stream: Duplex
    try {
      const access = accessOfX509Certificate(cert)
      const admit = admitter(access, user, node, request)
      // Judged by the node's labels, then an SSH connection counts against the roles'
      // max_connections (connection-limits.ts). Once admitted, the connection is judged again
      // whenever the node's labels change (dropRelabelled), from before its stream opens.
      stream = await this.options.nodes.dial(
        node,
        request,
        (labels, hostId) => {
          const refusal = admit(labels)
          if (refusal === undefined) connection.admitted = { node, hostId, admit }
          return refusal
        },
        { user, access, vouch: { [USER_CERT_HEADER]: cert.raw.toString('base64') }, client: socket },
      )
    } catch (error) {
      const denied = error instanceof AccessDenied ? { access_denied: true, reason: error.reason } : {}
      log.info(`user ${user} cannot reach ${node}: ${(error as Error).message}`, { user, node, ...denied })
      refuse((error as Error).message)
      return
    }
    if (socket.destroyed) {
      // Closed meanwhile (the user left, or its CA was dropped): the node's stream goes too.
      stream.destroy()
      return
    }
    log.info(`user ${user} connected to ${node} (${request.service})`, { from: remoteAddress })
    answer({ ok: true })
    if (!plain) {
      splice(socket, stream)
      return
    }
    const drop = () => stream.destroy()
    socket.once('close', drop)
    socket.once('readable', () => {
      socket.off('close', drop)
      splice(socket, stream)
    })
  }
}

/** How a user connection to `node` is judged by the node's labels: a role's ports count on the nodes that role selects. */
function admitter(access: Access, user: string, node: string, request: DialRequestIn): Admit {
  return (labels) => {
    const nodeDenied = nodeRefusal(access, labels)
    if (nodeDenied || request.service !== 'port') return nodeDenied
    const portDenied = portRefusal(access, request.name ?? '', labels) ?? portCertificateRefusal(request.certificate, user)
    if (portDenied) throw new AccessDenied(`access to port "${request.name}" of node "${node}" denied: ${portDenied}`, portDenied)
    return undefined
  }
}

/** Why `admit` refuses these labels now, or undefined. */
function refusalOf(admit: Admit, labels: Record<string, string>): string | undefined {
  try {
    return admit(labels)
  } catch (error) {
    if (error instanceof AccessDenied) return error.reason
    throw error
  }
}

/** Answers a refused user connection with why, then closes it. */
function refuse(socket: Socket, error: string): void {
  writeMessage<DialReply>(socket, { ok: false, error })
  // Closed whole once the answer is out: half-open, a client that never closes its side would hold it for good.
  socket.destroySoon()
}

/**
 * Why the OpenSSH certificate sent for a forwarded port cannot go to the node, or undefined:
 * it must be there and name the user this connection's TLS certificate names. The node
 * checks its signature and dates; here, only that nobody passes on another user's.
 */
export function portCertificateRefusal(certificate: string | undefined, user: string): string | undefined {
  if (certificate === undefined) return 'the request carries no SSH certificate, which nodes now require: upgrade warren'
  let keyId: string
  try {
    keyId = parseSshCertificate(certificate).keyId
  } catch (error) {
    return `the request's SSH certificate cannot be read: ${(error as Error).message}`
  }
  return keyId === user ? undefined : `the request's SSH certificate names user "${keyId}", the TLS certificate user "${user}"`
}
