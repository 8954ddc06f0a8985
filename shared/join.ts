// Joining a cluster. The CA is fetched first over an unverified connection and checked
// against the pin; only then does the token leave the device, over a connection whose
// server must chain to that pinned CA. A hijacked address therefore never sees the token.
// The device makes its keys, signs the server's challenge with both (proof that it holds
// them, join-proof.ts) and receives certificates and the host ID the server chose. A device
// tries one join again with the same keys when it got no answer (enroll.ts).

import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { ApiClient } from './api-client.ts'
import { AssignedLabelsRefused } from './assigned-labels.ts'
import { WarrenError } from './errors.ts'
import { acceptAssignedLabels, type NodeIdentity } from './identity-store.ts'
import { joinProofMessage, signProof } from './join-proof.ts'
import { caPin, pinMatches, singleCertificate } from './pin.ts'
import { type ClusterCA, type JoinBodyIn, type Joined, joinSealPurpose } from './protocol/hosts.ts'
import { CertificatesRefused, checkHostSshCertificate, checkHostTlsCertificate, setSshSigner } from './renewed-certificates.ts'
import { seal, trustedSealingKey } from './sealed-login.ts'
import { sshPublicKeyLine } from './ssh-cert.ts'
import { checkTrust, TrustRefused } from './trust-statement.ts'

export interface JoinOptions {
  /** host:port of an auth server or of a proxy's web port. */
  authServer: string
  token: string
  caPins: string[]
  nodename: string
  roles: string[]
  /** A proxy's configured public addresses (hosts), which its certificates then name. */
  publicAddrs?: string[]
  labels?: Record<string, string>
  /** Where warnings go (standard error by default). */
  warn?: (message: string) => void
  /**
   * The keys to have certified (fresh ones unless given): every try of one join sends the
   * same, so that a try whose answer was lost is answered again (auth/join-repeat.ts).
   */
  keys?: JoinKeys
  /** The answer's assigned labels were refused (not this host's, or not signed by the set it took), and why: the join stands without them. */
  refusedAssignedLabels?: (reason: string) => void
}

export class PinMismatchError extends WarrenError {}

/** Fetches the cluster CA and checks it against the pins (when any are given). */
export async function fetchTrustedCA(server: string, pins: string[], warn: (message: string) => void): Promise<ClusterCA> {
  const anonymous = new ApiClient({ server })
  let ca: ClusterCA
  try {
    ca = await anonymous.call('GET /v1/ca')
  } finally {
    await anonymous.close()
  }
  if (!Array.isArray(ca.host_ca_certs) || ca.host_ca_certs.length === 0) throw new WarrenError(`${server} did not return a cluster CA`)
  // One certificate per entry, re-encoded: what TLS then trusts is exactly what was pinned.
  const certs = ca.host_ca_certs.map((pem, i) => singleCertificate(pem, `CA entry ${i + 1} from ${server}`))
  const presented = certs.map(caPin)
  if (pins.length === 0) {
    warn(
      `WARN: joining without --ca-pin: the identity of ${server} is not verified. The CA it presented has pin ${presented.join(', ')}; check it with "warrenctl status" and pass --ca-pin next time.`,
    )
    return { ...ca, host_ca_certs: certs }
  }
  // Trust only the pinned certificates: a hijacker could list its own CA beside the real one.
  const pinned = certs.filter((pem) => pins.some((pin) => pinMatches([pem], pin)))
  if (pinned.length === 0) {
    throw new PinMismatchError(
      `CA pin mismatch: ${server} presented a CA with pin ${presented.join(', ')}, but --ca-pin expects ${pins.join(', ')}. Refusing to send the join token: the address may be hijacked, or the pin is wrong.`,
    )
  }
  return { ...ca, host_ca_certs: pinned }
}

export interface JoinKeys {
  tls: { publicKey: KeyObject; privateKey: KeyObject }
  ssh: { publicKey: KeyObject; privateKey: KeyObject }
}

/** What a join asks for, besides the keys. */
export interface JoinFields {
  token: string
  nodename: string
  roles: string[]
  publicAddrs?: string[]
  labels?: Record<string, string>
}

/**
 * Asks the server for a challenge, signs it with both keys, and joins: over `client`, which
 * must already verify the server against the pinned CA.
 */
export async function requestJoin(client: ApiClient, cluster: { name: string; caPems: string[] }, fields: JoinFields, keys: JoinKeys): Promise<Joined> {
  const challenge = await client.call('POST /v1/join/challenge')
  // The token goes sealed for the auth server: a proxy on the way reads none of it.
  const sealingKey = trustedSealingKey(cluster.name, challenge.sealing_key, cluster.caPems)
  if (!sealingKey) {
    throw new WarrenError(
      `cluster "${cluster.name}" offers no sealing key signed by its CA, so the token was not sent: its auth server is of an earlier version, or the proxy is not what it claims`,
    )
  }
  return client.call('POST /v1/join', { body: signedJoinBody(cluster.name, challenge.nonce, fields, keys, sealingKey) })
}

/**
 * The body of POST /v1/join: the fields, both public keys, and each key's signature over the
 * challenge; the token sealed for `sealingKey` (bound to the challenge and the rest of the
 * request), or plain without one, as clients of earlier versions send it.
 */
export function signedJoinBody(clusterName: string, nonce: string, fields: JoinFields, keys: JoinKeys, sealingKey?: KeyObject): JoinBodyIn {
  const message = joinProofMessage({ clusterName, nonce, tlsPublicKey: keys.tls.publicKey, sshPublicKey: keys.ssh.publicKey })
  const body: JoinBodyIn = {
    nodename: fields.nodename,
    roles: fields.roles,
    tls_public_key: keys.tls.publicKey.export({ type: 'spki', format: 'pem' }) as string,
    ssh_public_key: sshPublicKeyLine(keys.ssh.publicKey),
    ...(fields.publicAddrs?.length ? { public_addrs: fields.publicAddrs } : {}),
    labels: fields.labels ?? {},
    nonce,
    tls_signature: signProof(message, keys.tls.privateKey),
    ssh_signature: signProof(message, keys.ssh.privateKey),
  }
  if (!sealingKey) return { ...body, token: fields.token }
  return { ...body, sealed: seal(sealingKey, joinSealPurpose(clusterName, body), { token: fields.token }).sealed }
}

/** Fresh keys as a device makes them: ECDSA P-256 for TLS, Ed25519 for SSH. */
export function generateJoinKeys(): JoinKeys {
  return { tls: generateKeyPairSync('ec', { namedCurve: 'P-256' }), ssh: generateKeyPairSync('ed25519') }
}

export async function joinCluster(options: JoinOptions): Promise<NodeIdentity> {
  const warn = options.warn ?? ((message: string) => process.stderr.write(message + '\n'))
  const ca = await fetchTrustedCA(options.authServer, options.caPins, warn)
  const keys = options.keys ?? generateJoinKeys()
  const client = new ApiClient({ server: options.authServer, caPems: ca.host_ca_certs })
  let response: Joined
  try {
    response = await requestJoin(client, { name: ca.cluster_name, caPems: ca.host_ca_certs }, options, keys)
  } finally {
    await client.close()
  }
  return identityFromJoin(
    response,
    { tls: keys.tls.privateKey, ssh: keys.ssh.privateKey },
    {
      nodename: options.nodename,
      roles: options.roles,
      authServer: options.authServer,
      trustedCAs: ca.host_ca_certs,
      refusedAssignedLabels: options.refusedAssignedLabels,
    },
  )
}

/**
 * The identity a join gives: the keys made on the device and the certificates for them. The
 * CAs it trusts from then on are the answer's signed set, which a CA the device already
 * trusts (the pinned one) must have signed: the answer may come through a proxy, and a proxy
 * must not choose them. The certificates are taken only as renewed ones are
 * (renewed-certificates.ts): the TLS certificate from a CA of that set, for the device's key
 * and the host ID given; the SSH certificate a host certificate for its SSH key, naming what
 * the TLS certificate names, in its dates, and signed by the SSH key the set names for the
 * host CA that issued the TLS certificate (from an auth server of an earlier version, whose
 * set names none: whole under the key it names as its signer, which renewals are then held to).
 * The labels the cluster assigns to the host come with it, taken only for this host and
 * signed by a CA of that set (shared/assigned-labels.ts); refused ones are left out.
 */
export function identityFromJoin(
  response: Joined,
  keys: { tls: KeyObject; ssh: KeyObject },
  request: { nodename: string; roles: string[]; authServer: string; trustedCAs: string[]; refusedAssignedLabels?: (reason: string) => void },
): NodeIdentity {
  try {
    checkTrust(response.trust, { clusterName: response.cluster_name, hostCAPems: request.trustedCAs, userCASshKeys: [], version: -1 })
  } catch (error) {
    if (error instanceof TrustRefused) throw new WarrenError(`the join's answer is not what the cluster's CA signed: ${error.message}`)
    throw error
  }
  const trust = response.trust!
  try {
    const tlsCert = checkHostTlsCertificate(response.tls_cert, { hostCAs: trust.host_ca_certs, tlsPublicKey: createPublicKey(keys.tls), hostId: response.host_id })
    const signers = setSshSigner({ hostCAPems: trust.host_ca_certs, hostCASshKeys: trust.host_ca_ssh_keys }, tlsCert)
    checkHostSshCertificate(response.ssh_cert, { tlsCert, sshPublicKey: createPublicKey(keys.ssh), signers, now: Date.now() })
  } catch (error) {
    if (error instanceof CertificatesRefused) throw new WarrenError(`the join's certificates were refused: ${error.message}`)
    throw error
  }
  const identity: NodeIdentity = {
    hostId: response.host_id,
    nodename: request.nodename,
    clusterName: response.cluster_name,
    roles: request.roles,
    authServers: [request.authServer],
    tlsKeyPem: keys.tls.export({ type: 'pkcs8', format: 'pem' }) as string,
    tlsCertPem: response.tls_cert,
    sshKeyPem: keys.ssh.export({ type: 'pkcs8', format: 'pem' }) as string,
    sshCert: response.ssh_cert,
    hostCAPems: trust.host_ca_certs,
    ...(trust.host_ca_ssh_keys ? { hostCASshKeys: trust.host_ca_ssh_keys } : {}),
    userCASshKeys: trust.user_ca_ssh_keys,
    trustVersion: trust.version,
  }
  try {
    acceptAssignedLabels(identity, response.assigned_labels)
  } catch (error) {
    if (!(error instanceof AssignedLabelsRefused)) throw error
    request.refusedAssignedLabels?.(error.message)
  }
  return identity
}
