// Joins per second against one auth server process (`warren start --roles=auth`), from
// concurrent clients over keep-alive HTTPS — with, as the baseline in the same run, the
// same number of requests to the health endpoint (TLS + HTTP, no token, no signing, no write).
//
//   npm run bench:join [-- --joins=3000 --concurrency=32]

import { parseArgs } from 'node:util'
import { ApiClient } from '../shared/api-client.ts'
import { generateJoinKeys, requestJoin } from '../shared/join.ts'
import { AuthProcess } from '../test/helpers/cluster.ts'

const { values } = parseArgs({ options: { joins: { type: 'string', default: '3000' }, concurrency: { type: 'string', default: '32' } } })
const total = Number(values.joins)
const concurrency = Number(values.concurrency)

// Every client here shares one address, and a join in flight holds one of that address's
// tries until it succeeds: the burst must cover the concurrency, or the limiter is measured.
const auth = await new AuthProcess({ authServiceYaml: `  join_rate_limit: { burst: ${concurrency * 2}, per_minute: 60 }` }).start()
try {
  const { token } = await auth.api<{ token: string }>('POST', '/v1/tokens', { roles: 'node', ttl_ms: 3600_000 })
  const pin = (await auth.api<{ host_ca: { pins: string[] } }>('GET', '/v1/status')).host_ca.pins[0]
  const ca = await new ApiClient({ server: auth.address }).call('GET /v1/ca')
  const client = new ApiClient({ server: auth.address, caPems: ca.host_ca_certs })

  // Devices make their own keys; a pool keeps key generation out of the measurement.
  const keys = Array.from({ length: 64 }, generateJoinKeys)

  async function measure(label: string, once: (i: number) => Promise<unknown>): Promise<number> {
    let next = 0
    const started = performance.now()
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < total) await once(next++)
      }),
    )
    const perSecond = total / ((performance.now() - started) / 1000)
    console.log(`${label.padEnd(28)} ${perSecond.toFixed(0).padStart(6)} /s  (${total} requests, ${concurrency} concurrent)`)
    return perSecond
  }

  // A join is the challenge, the signatures with both keys and the join itself; every node
  // name once (names are unique among registered nodes).
  let round = 'warm'
  const join = (i: number) =>
    requestJoin(client, { name: ca.cluster_name, caPems: ca.host_ca_certs }, { token, nodename: `bench-${round}-${i}`, roles: ['node'] }, keys[i % keys.length])
  await measure('warm-up joins', join)
  round = 'measured'
  const health = await measure('baseline: GET /v1/health', () => client.call('GET /v1/health'))
  const joins = await measure('joins', join)
  console.log(`joins/s ÷ health requests/s = ${(joins / health).toFixed(2)}   (pin ${pin.slice(0, 15)}…)`)
  await client.close()
} finally {
  await auth.stop()
}
