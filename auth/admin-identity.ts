// warrenctl's credentials, which the auth server writes into its data dir at every start.

import { join } from 'node:path'

export interface AdminIdentityFile {
  auth_server: string
  cluster_name: string
  host_ca_certs: string[]
  cert: string
  key: string
}

export function adminIdentityPath(dataDir: string): string {
  return join(dataDir, 'admin', 'identity.json')
}
