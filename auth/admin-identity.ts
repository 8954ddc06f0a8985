// warrenctl's credentials, which the auth server writes into its data dir at every start.

import { join } from 'node:path'

export interface AdminIdentityFile {
  auth_server: string
  cluster_name: string
  host_ca_certs: string[]
  /**
   * CAs besides the host CAs that the auth server's own certificate may come from: the
   * stand-in that signs it while the host CA has expired (auth/own-credentials.ts), for
   * warrenctl alone to trust. Absent otherwise.
   */
  server_ca_certs?: string[]
  cert: string
  key: string
}

export function adminIdentityPath(dataDir: string): string {
  return join(dataDir, 'admin', 'identity.json')
}
