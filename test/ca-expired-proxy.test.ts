// A proxy whose trusted host CA has expired (a cluster left unrotated past the CA's ten years:
// here the auth server and the proxy started again under libfaketime eleven years on) says
// so, rather than that no trust bridge leads to what the auth server presents; once the host
// CA is rotated through to standby it follows the bridge out of the expired CA, and (its own
// certificate being ten years past the recovery window here) is told to join again.

import { join } from 'node:path'
import t from 'tap'
import { AuthProcess, Daemon, freePort, JSON_LOGS, logEntries, ProxyProcess, ROOT, run } from './helpers/cluster.ts'
import { clockOffBy } from './helpers/faketime.ts'
import { until } from './helpers/until.ts'

const later = clockOffBy('+4000d')

t.test('a proxy whose trusted host CA expired says so, and follows the rotation that replaces it', { timeout: 240_000 }, async (t) => {
  const port = await freePort()
  const first = await new AuthProcess({ port }).start()
  const pin = await first.pin()
  const proxy = await new ProxyProcess({ auth: first, token: await first.token(['tokens', 'add', '--type=proxy']), pin, extraYaml: JSON_LOGS }).start()
  await proxy.stop()
  await first.stop()

  const auth = await new AuthProcess({ dataDir: first.dataDir, port, env: later }).start()
  t.teardown(() => auth.stop())
  // The proxy's own start waits for the auth server: it never listens here, so its log is read.
  const eleven = new Daemon(['start', '--roles=proxy', `--config=${join(proxy.dataDir, 'warren.yaml')}`], later)
  t.teardown(() => eleven.stop())
  let said: Record<string, unknown>[] = []
  await until('the proxy to say why it cannot go on', () => (said = logEntries(eleven.stderr, { level: 'error' }).filter((e) => e.trusted_ca_expired !== undefined)).length > 0, {
    timeoutMs: 60_000,
  })
  const expected = new Date(Date.now() + 10 * 365.25 * 86_400_000).getUTCFullYear()
  t.match(said[0], { trusted_ca_expired: new RegExp(`^${expected}-\\d\\d-\\d\\d$`), readmit: /^warrenctl / }, 'the day its trusted CA ended, and the command that re-admits it')
  t.equal(logEntries(eleven.stderr).filter((e) => e.trust_unbridged !== undefined && e.trusted_ca_expired === undefined).length, 0, 'not taken for a missed rotation')

  // The rotation its message names, through to standby: the bridge out of the expired CA is
  // made as it is dropped, and the proxy follows it (asking again a minute after it last did).
  for (const phase of ['init', 'update_clients', 'update_servers', 'standby']) {
    const step = await run(join(ROOT, 'cli/warrenctl.ts'), ['auth', 'rotate', '--type=host', '--manual', `--phase=${phase}`, `--data-dir=${auth.dataDir}`], { env: later })
    t.equal(step.code, 0, `${phase}: ${step.stderr}`)
  }
  await until('the proxy to follow the rotation', () => logEntries(eleven.stderr).some((e) => e.trust_bridged !== undefined), { timeoutMs: 90_000 })
  // Its certificate expired ten years before the recovery window's year: it is to join again.
  await until('the recovery to be refused', () => logEntries(eleven.stderr, { level: 'error' }).some((e) => e.readmit !== undefined && e.trusted_ca_expired === undefined), {
    timeoutMs: 30_000,
  })
})
