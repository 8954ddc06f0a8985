// The wall clock steps forward under a running cluster (a VM resumed after a pause, a host
// booted with a stale real-time clock and set by NTP after Warren started): the auth server,
// the proxy and the node each notice the step (shared/clock-watch.ts) and renew by the clock
// as it reads now what the step made due or expired, without a restart. The auth server,
// the proxy and one node run under libfaketime (Debian `faketime`), sharing the file that
// sets their time; another node runs by the real clock, as one paused all that while would,
// and its tunnel is closed once its certificate is past its end by the proxy's clock.

import { X509Certificate } from 'node:crypto'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { WarrenStatus } from '../shared/status.ts'
import { AuthProcess, JSON_LOGS, ProxyProcess, ROOT, run, startNode, tempDir } from './helpers/cluster.ts'
import { fakeTime, LIBFAKETIME } from './helpers/faketime.ts'
import { until } from './helpers/until.ts'

t.setTimeout(180_000)

const WARRENCTL = join(ROOT, 'cli/warrenctl.ts')
const DAY_MS = 86_400_000

/** Sets the clock of the processes under libfaketime, which read the file again within a second (FAKETIME_CACHE_DURATION). */
async function setClock(file: string, offset: string): Promise<void> {
  writeFileSync(file, `${offset}\n`)
  await sleep(2000)
}

const skip = existsSync(LIBFAKETIME) ? false : 'libfaketime is not installed (Debian package faketime)'

t.test('after steps of the clock by 8 and 31 days, warrenctl, the proxy and the node work again without a restart', { skip }, async (t) => {
  const clockFile = join(tempDir(), 'faketime')
  writeFileSync(clockFile, '+0\n')
  const env = fakeTime(clockFile)
  // The offset the processes under libfaketime run at.
  let offsetMs = 0
  const faked = () => Date.now() + offsetMs

  // The default lifetimes: 30 days for host certificates, 7 for warrenctl's identity.
  const auth = await new AuthProcess({ env }).start()
  t.teardown(() => auth.stop())
  // warrenctl by the same clock as the auth server, as it would run on the same host.
  const ctl = (args: string[]) => run(WARRENCTL, [...args, `--data-dir=${auth.dataDir}`], { env })
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, env }).start()
  t.teardown(() => proxy.stop())
  const config = join(tempDir(), 'node.yaml')
  writeFileSync(config, JSON_LOGS)
  const nodeArgs = async (name: string) => [
    `--config=${config}`,
    `--data-dir=${tempDir()}`,
    `--auth-server=${proxy.web}`,
    `--token=${await auth.token()}`,
    `--ca-pin=${pin}`,
    `--nodename=${name}`,
  ]
  const node = startNode(await nodeArgs('stepped'), env)
  t.teardown(() => node.stop())
  const paused = startNode(await nodeArgs('paused'))
  t.teardown(() => paused.stop())
  const tunnelled = (s: WarrenStatus) => (s.node?.tunnel?.proxies.length ?? 0) === 1
  await node.waitForStatus('the node to hold its tunnel', tunnelled, 60_000)
  await paused.waitForStatus('the other node to hold its tunnel', tunnelled, 60_000)
  const tunnelsAtProxy = async () => ((await proxy.daemon.status()).proxy?.tunnels.hosts ?? []).map((host) => host.nodename).sort()
  t.same(await tunnelsAtProxy(), ['paused', 'stepped'], 'the proxy holds both tunnels')
  t.equal((await ctl(['status'])).code, 0, 'warrenctl works')

  // Past warrenctl's 7-day identity, before any host certificate is due.
  await setClock(clockFile, '+8d')
  offsetMs = 8 * DAY_MS
  await until('warrenctl to work again after a step of 8 days', async () => (await ctl(['status'])).code === 0, { timeoutMs: 30_000, everyMs: 1000 })
  const admin = new X509Certificate(JSON.parse(readFileSync(auth.identityPath, 'utf8')).cert)
  t.ok(admin.validToDate.getTime() > faked() + 6 * DAY_MS, 'warrenctl works again with an identity the auth server rewrote after the step')

  // Past the 30-day certificates of the auth server, the proxy and the nodes.
  await setClock(clockFile, '+31d')
  offsetMs = 31 * DAY_MS
  let proxyStatus: WarrenStatus | undefined
  await until(
    "the proxy's certificate to be recovered",
    async () => {
      proxyStatus = await proxy.daemon.status().catch(() => undefined)
      const cert = proxyStatus?.proxy?.certificate
      return cert !== undefined && Date.parse(cert.not_after) > faked() && Date.parse(cert.not_before) <= faked() + 60_000
    },
    { timeoutMs: 45_000, everyMs: 500 },
  )
  t.ok(Date.parse(proxyStatus!.proxy!.certificate.not_after) > faked() + 29 * DAY_MS, "the proxy's certificate is new, valid by the clock as it reads now")

  await until("the paused node's tunnel to be closed: its certificate expired by the proxy's clock", async () => !(await tunnelsAtProxy()).includes('paused'), {
    timeoutMs: 15_000,
    everyMs: 500,
  })
  t.pass("the proxy closed the tunnel whose node's certificate expired")

  const back = await node.waitForStatus(
    'the stepped node to hold a tunnel with a valid certificate',
    (s) => tunnelled(s) && Date.parse(s.node!.certificate.not_after) > faked(),
    60_000,
  )
  t.ok(Date.parse(back.node!.certificate.not_after) > faked() + 29 * DAY_MS, "the node's certificate is new")
  await until('the proxy to hold its tunnel', async () => (await tunnelsAtProxy()).join() === 'stepped', { timeoutMs: 15_000, everyMs: 500 })
  t.same(await tunnelsAtProxy(), ['stepped'], 'the proxy holds its tunnel, and not the other')
  t.ok(node.running && proxy.daemon.running && auth.daemon.running, 'the same processes')
  await until('warrenctl to work after a step of 31 days', async () => (await ctl(['status'])).code === 0, { timeoutMs: 15_000, everyMs: 1000 })
  t.pass('warrenctl works: the auth server renewed its TLS certificate')
})
