// Many nodes joining from one process, for the scale benchmark. Each join is the real
// challenge and POST /v1/join that shared/join.ts sends (the token, fresh keys made here
// and signatures proving them, a host
// certificate and an SSH host certificate signed and the node registered by the auth
// server), but over one keep-alive HTTPS client pinned to the CA fetched once, instead
// of two new TLS connections per join: joinCluster() builds an HTTPS client for the CA
// fetch and another for the join, which caps one process at about 50 joins/s here.

import { ApiClient } from '../../shared/api-client.ts'
import type { NodeIdentity } from '../../shared/identity-store.ts'
import { fetchTrustedCA, generateJoinKeys, identityFromJoin, requestJoin } from '../../shared/join.ts'

export class BulkJoiner {
  private readonly authServer: string
  private readonly token: string
  private client?: ApiClient
  private clusterName = ''
  private trustedCAs: string[] = []

  constructor(authServer: string, token: string) {
    this.authServer = authServer
    this.token = token
  }

  /** Checks the cluster CA against `pin` (as joinCluster does) before any token is sent. */
  async connect(pin: string): Promise<void> {
    const ca = await fetchTrustedCA(this.authServer, [pin], () => {})
    this.client = new ApiClient({ server: this.authServer, caPems: ca.host_ca_certs })
    this.clusterName = ca.cluster_name
    this.trustedCAs = ca.host_ca_certs
  }

  async join(nodename: string): Promise<NodeIdentity> {
    if (!this.client) throw new Error('connect() first')
    const keys = generateJoinKeys()
    const response = await requestJoin(this.client, { name: this.clusterName, caPems: this.trustedCAs }, { token: this.token, nodename, roles: ['node'] }, keys)
    return identityFromJoin(
      response,
      { tls: keys.tls.privateKey, ssh: keys.ssh.privateKey },
      { nodename, roles: ['node'], authServer: this.authServer, trustedCAs: this.trustedCAs },
    )
  }

  async close(): Promise<void> {
    await this.client?.close()
  }
}
