// A node whose clock runs ahead of the auth server's by more than its certificate has left
// (but not so far that the proxy's certificate looks expired to it) reads its certificate as
// expired, while the auth server, whose clock decides, holds it still valid and refuses to
// recover it. The node renews it the usual way instead, before it expires, says by how much
// its clock runs ahead (status field clock.clock_ahead_ms, log field clock_ahead_ms), and
// stays reachable. The node runs under libfaketime (Debian `faketime`).

import { X509Certificate } from 'node:crypto'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { AuthProcess, openssh, ProxyProcess, signUser, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'
import { clockOffBy, LIBFAKETIME } from './helpers/faketime.ts'
import { until } from './helpers/until.ts'

t.setTimeout(180_000)

const skip = existsSync(LIBFAKETIME) ? false : 'libfaketime is not installed (Debian package faketime)'

/** How far the node's clock runs ahead: less than the proxy's certificate ever has left (it renews with a third of its 45 s to go, less a spread). */
const AHEAD_S = 10

const certificateOf = (dataDir: string) => new X509Certificate(readFileSync(join(dataDir, 'identity', 'host.crt'), 'utf8'))

t.test('a node whose clock runs ahead of the auth server renews a certificate it reads as expired', { skip }, async (t) => {
  const auth = await new AuthProcess({ authServiceYaml: '  host_cert_ttl: 45s' }).start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  t.teardown(() => proxy.stop())

  const nodeDir = tempDir()
  const config = join(tempDir(), 'node.yaml')
  writeFileSync(config, 'log: { format: json, level: info }\nssh_service:\n  listen_addr: 127.0.0.1:0\n')
  const args = [`--config=${config}`, `--data-dir=${nodeDir}`, `--auth-server=${auth.address}`, `--ca-pin=${pin}`, '--nodename=ahead']
  const joined = startNode([...args, `--token=${await auth.token()}`])
  await waitForNode(auth, 'ahead', 60_000)
  await joined.stop()

  // Restarted once its certificate has less left than the clock runs ahead: expired by the node's clock only.
  const old = certificateOf(nodeDir)
  const expires = old.validToDate.getTime()
  await until('the certificate to have less left than the clock runs ahead', () => Date.now() > expires - (AHEAD_S - 3) * 1000, { timeoutMs: 60_000, everyMs: 200 })
  const node = startNode(args, clockOffBy(`+${AHEAD_S}s`))
  t.teardown(() => node.stop())

  let renewedAt = 0
  await until(
    'the node to hold a new certificate',
    () => {
      if (certificateOf(nodeDir).serialNumber === old.serialNumber) return false
      renewedAt = Date.now()
      return true
    },
    { timeoutMs: 60_000, everyMs: 100 },
  )
  const renewed = certificateOf(nodeDir)
  t.ok(renewedAt < expires, `renewed before the old certificate expired by the auth server's clock (${renewedAt - expires} ms after its end)`)
  t.ok(renewed.validToDate.getTime() > Date.now() + 30_000, 'the new certificate runs a full lifetime by the auth server clock')

  const status = await node.waitForStatus('the node to report how far its clock runs ahead', (s) => s.node?.clock.clock_ahead_ms !== undefined, 15_000)
  const ahead = status.node!.clock.clock_ahead_ms!
  t.ok(ahead > (AHEAD_S - 2) * 1000 && ahead < (AHEAD_S + 2) * 1000, `the status says the clock runs ${ahead} ms ahead`)
  const warned = node.stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .some((entry) => entry.level === 'warn' && typeof entry.clock_ahead_ms === 'number')
  t.ok(warned, 'a WARN entry names clock_ahead_ms')

  // Past the old certificate's end, and a renewal later, the node is reached through the proxy.
  await until('the old certificate to be past its end', () => Date.now() > expires + 1000, { timeoutMs: 30_000 })
  const profile = await signUser(auth, proxy.web)
  const result = await openssh(profile, [`${testLogin()}@ahead`, 'echo reached'])
  t.equal(result.stdout.trim(), 'reached', `reached through the proxy (${result.stderr.trim()})`)
  t.ok(node.running, 'the same node process')
})
