// Repeated failed joins from one address are throttled; the refusal says when to retry.

import t from 'tap'
import { AuthProcess } from './helpers/cluster.ts'
import { joinCluster } from '../shared/join.ts'

const auth = new AuthProcess({ authServiceYaml: '  join_rate_limit: { burst: 3, per_minute: 1 }' })
t.before(() => auth.start())
t.teardown(() => auth.stop())

t.test('the fourth failure in a burst of three is refused with 429, even with a valid token', async (t) => {
  const pin = await auth.pin()
  const attempt = (token: string) => joinCluster({ authServer: auth.address, token, caPins: [pin], nodename: 'guesser', roles: ['node'] })
  for (let i = 0; i < 3; i++) {
    await t.rejects(attempt(`wrong-token-guess-${i}-padding`), /token expired or not found/)
  }
  await t.rejects(attempt('wrong-token-guess-3-padding'), /too many failed join attempts from 127\.0\.0\.1; try again in \d+s/)
  const { token } = await auth.api<{ token: string }>('POST', '/v1/tokens', { roles: 'node', ttl_ms: 60_000 })
  await t.rejects(attempt(token), /too many failed join attempts/, 'the address is locked out until the bucket refills')
})
