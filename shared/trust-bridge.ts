// A host (a node or a proxy) that was away through a host CA rotation trusts only the CA the
// cluster dropped, so every server of the cluster fails its TLS verification. It asks where
// it joined for the bridges out of the CAs it trusts (auth/rotation.ts keeps them) over TLS
// it does not verify: the answer is public, and the host takes a bridge only as checkTrust
// allows (signed by a host CA it trusts, for its cluster, newer than its set), never by
// where it came from.

import { parseTrustBridges, type TrustBridges } from './protocol/bridges.ts'

/** The bridges out of the host CA `pin`, and the set the cluster trusts now, as `server` answers (unverified: check the signatures). */
export async function fetchTrustBridges(server: string, pin: string): Promise<TrustBridges> {
  const { ApiClient } = await import('./api-client.ts')
  // No CAs: the server is not verified, which is the point; nothing secret is sent.
  const client = new ApiClient({ server, timeoutMs: 15_000 })
  try {
    return parseTrustBridges(await client.call('GET /v1/trust/bridges', { query: { pin } }))
  } finally {
    await client.close()
  }
}
