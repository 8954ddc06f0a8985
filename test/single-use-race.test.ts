// Two joins racing on one single-use token: exactly one wins, every round.

import t from 'tap'
import { joinCluster } from '../shared/join.ts'
import { AuthProcess } from './helpers/cluster.ts'

// Every round has one refused join; let the loser's failures through the rate limiter.
const auth = new AuthProcess({ authServiceYaml: '  join_rate_limit: { burst: 100, per_minute: 100 }' })
t.before(() => auth.start())
t.teardown(() => auth.stop())

t.test('exactly one of two racing joins wins a single-use token (20 rounds)', async (t) => {
  const pin = await auth.pin()
  for (let round = 0; round < 20; round++) {
    const { token } = await auth.api<{ token: string }>('POST', '/v1/tokens', { roles: 'node', ttl_ms: 60_000, single_use: true })
    const attempt = (name: string) => joinCluster({ authServer: auth.address, token, caPins: [pin], nodename: name, roles: ['node'] })
    const results = await Promise.allSettled([attempt(`racer-a-${round}`), attempt(`racer-b-${round}`)])
    const won = results.filter((r) => r.status === 'fulfilled')
    const lost = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[]
    t.equal(won.length, 1, `round ${round}: one join wins`)
    t.match(String(lost[0]?.reason?.message), /token expired or not found/, `round ${round}: the other is refused`)
  }
})
