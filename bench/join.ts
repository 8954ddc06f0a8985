// Joins per second against one auth server process (`warren start --roles=auth`), from
// concurrent clients over keep-alive HTTPS — with, as the baseline in the same run, the
// same number of requests to the health endpoint (TLS + HTTP, no token, no signing, no write).
//
//   npm run bench:join [-- --joins=3000 --concurrency=32]

import { generateKeyPairSync, randomUUID } from 'node:crypto'
import { parseArgs } from 'node:util'
import { AuthProcess } from '../test/helpers/cluster.ts'
import { ApiClient } from '../shared/api-client.ts'
import { sshPublicKeyLine } from '../shared/ssh-cert.ts'

const { values } = parseArgs({ options: { joins: { type: 'string', default: '3000' }, concurrency: { type: 'string', default: '32' } } })
const total = Number(values.joins)
const concurrency = Number(values.concurrency)

const auth = await new AuthProcess().start()
try {
  const { token } = await auth.api<{ token: string }>('POST', '/v1/tokens', { roles: 'node', ttl_ms: 3600_000 })
  const pin = (await auth.api<{ host_ca: { pins: string[] } }>('GET', '/v1/status')).host_ca.pins[0]
  const ca = await new ApiClient({ server: auth.address }).call<{ host_ca_certs: string[] }>('GET', '/v1/ca')
  const client = new ApiClient({ server: auth.address, caPems: ca.host_ca_certs })

  // Devices make their own keys; a pool keeps key generation out of the measurement.
  const keys = Array.from({ length: 64 }, () => ({
    tls: generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }),
    ssh: sshPublicKeyLine(generateKeyPairSync('ed25519').publicKey),
  }))

  async function measure(label: string, once: (i: number) => Promise<unknown>): Promise<number> {
    let next = 0
    const started = performance.now()
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next < total) await once(next++)
    }))
    const perSecond = total / ((performance.now() - started) / 1000)
    console.log(`${label.padEnd(28)} ${perSecond.toFixed(0).padStart(6)} /s  (${total} requests, ${concurrency} concurrent)`)
    return perSecond
  }

  const join = (i: number) => client.call('POST', '/v1/join', {
    token,
    host_id: randomUUID(),
    nodename: `bench-${i}`,
    roles: ['node'],
    tls_public_key: keys[i % keys.length].tls,
    ssh_public_key: keys[i % keys.length].ssh,
  })
  await measure('warm-up joins', join)
  const health = await measure('baseline: GET /v1/health', () => client.call('GET', '/v1/health'))
  const joins = await measure('joins', join)
  console.log(`joins/s ÷ health requests/s = ${(joins / health).toFixed(2)}   (pin ${pin.slice(0, 15)}…)`)
  await client.close()
} finally {
  await auth.stop()
}
