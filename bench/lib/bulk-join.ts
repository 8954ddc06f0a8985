// Many nodes joining from one process, for the scale benchmark. Each join is the real
// POST /v1/join that shared/join.ts sends (the token, fresh keys made here, a host
// certificate and an SSH host certificate signed and the node registered by the auth
// server), but over one keep-alive HTTPS client pinned to the CA fetched once, instead
// of two new TLS connections per join: joinCluster() builds an HTTPS client for the CA
// fetch and another for the join, which caps one process at about 50 joins/s here.

import { generateKeyPairSync, randomUUID } from 'node:crypto'
import { ApiClient } from '../../shared/api-client.ts'
import type { NodeIdentity } from '../../shared/identity-store.ts'
import { fetchTrustedCA, identityFromJoin, type JoinResponse } from '../../shared/join.ts'
import { sshPublicKeyLine } from '../../shared/ssh-cert.ts'

export class BulkJoiner {
  private readonly authServer: string
  private readonly token: string
  private client?: ApiClient

  constructor(authServer: string, token: string) {
    this.authServer = authServer
    this.token = token
  }

  /** Checks the cluster CA against `pin` (as joinCluster does) before any token is sent. */
  async connect(pin: string): Promise<void> {
    const ca = await fetchTrustedCA(this.authServer, [pin], () => {})
    this.client = new ApiClient({ server: this.authServer, caPems: ca.host_ca_certs })
  }

  async join(nodename: string): Promise<NodeIdentity> {
    if (!this.client) throw new Error('connect() first')
    const tls = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const ssh = generateKeyPairSync('ed25519')
    const response = await this.client.call<JoinResponse>('POST', '/v1/join', {
      token: this.token,
      host_id: randomUUID(),
      nodename,
      roles: ['node'],
      tls_public_key: tls.publicKey.export({ type: 'spki', format: 'pem' }),
      ssh_public_key: sshPublicKeyLine(ssh.publicKey),
      addresses: [],
      labels: {},
    })
    return identityFromJoin(response, { tls: tls.privateKey, ssh: ssh.privateKey }, { nodename, roles: ['node'], authServer: this.authServer })
  }

  async close(): Promise<void> {
    await this.client?.close()
  }
}
