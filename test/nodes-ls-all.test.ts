// `warrenctl nodes ls --all` against real processes: two proxies behind HAProxy, a tunnel
// node online through both, one that went offline, and a direct node, each with its state,
// Last Seen, agent version, certificate expiry and proxies. Offline nodes are forgotten
// after auth_service.node_ttl, unless a lock names them; a forgotten node that comes back
// is listed again (its registration was kept).

import { X509Certificate } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { formatUtc } from '../shared/duration.ts'
import { loadIdentity } from '../shared/identity-store.ts'
import { VERSION } from '../shared/version.ts'
import { balancerAddress, haproxyUnavailable, startBalancer } from './helpers/balancer.ts'
import { AuthProcess, type Daemon, type ProxyProcess, proxiesBehindBalancer, startNode, tempDir, waitForNode } from './helpers/cluster.ts'
import { until } from './helpers/until.ts'

const skip = haproxyUnavailable()
t.setTimeout(300_000)

// Presence lapses 6 s after the last heartbeat (direct nodes beat every 5 s); offline nodes
// are forgotten 30 s after it.
const auth = new AuthProcess({ authServiceYaml: '  heartbeat_ttl: 6s\n  node_ttl: 30s' })
let proxies: ProxyProcess[] = []
let pin = ''
const daemons: Daemon[] = []

t.before(async () => {
  if (skip) return
  await auth.start()
  pin = await auth.pin()
  const balancer = await balancerAddress()
  proxies = await proxiesBehindBalancer(auth, pin, 2, balancer)
  const lb = startBalancer(balancer, proxies)
  t.teardown(() => lb.kill())
})
t.teardown(async () => {
  for (const daemon of daemons) await daemon.stop()
  for (const proxy of proxies) await proxy.stop()
  await auth.stop()
})

function heldCount(stderr: string): number {
  const all = [...stderr.matchAll(/\b(\d+) held\b/g)]
  return all.length ? Number(all[all.length - 1][1]) : 0
}

async function node(nodename: string, options: { direct?: boolean } = {}): Promise<{ daemon: Daemon; dataDir: string; config: string }> {
  const dataDir = tempDir()
  const config = join(dataDir, 'warren.yaml')
  writeFileSync(config, `version: v1\ndata_dir: ${dataDir}\nlabels: { site: lab }\nssh_service:\n  listen_addr: 127.0.0.1:0\n`)
  const daemon = startNode([
    `--config=${config}`,
    `--auth-server=${options.direct ? auth.address : proxies[0].web}`,
    `--token=${await auth.token()}`,
    `--ca-pin=${pin}`,
    `--nodename=${nodename}`,
  ])
  daemons.push(daemon)
  if (!options.direct) await daemon.waitFor(`${nodename}'s tunnels to both proxies`, () => heldCount(daemon.stderr) === 2, 30_000)
  await waitForNode(auth, nodename)
  return { daemon, dataDir, config }
}

/** The table's rows as objects keyed by its headers; columns are cut where the row of dashes says. */
function table(text: string): Record<string, string>[] {
  const [header, dashes, ...rows] = text.trimEnd().split('\n')
  const starts = [...dashes.matchAll(/-+/g)].map((match) => match.index!)
  const cut = (line: string) => starts.map((start, i) => line.slice(start, starts[i + 1]).trim())
  const names = cut(header)
  return rows.map((row) => Object.fromEntries(cut(row).map((cell, i) => [names[i], cell])))
}

async function listAll(): Promise<{ headers: string; rows: Map<string, Record<string, string>> }> {
  const result = await auth.ctl(['nodes', 'ls', '--all'])
  if (result.code !== 0) throw new Error(result.stderr)
  return { headers: result.stdout.split('\n')[0], rows: new Map(table(result.stdout).map((row) => [row['Node Name'], row])) }
}

const certExpiry = (dataDir: string) => formatUtc(new X509Certificate(loadIdentity(dataDir)!.tlsCertPem).validToDate.getTime())

t.test('online, offline and direct nodes, with Last Seen, Version, Cert Expires and Proxies', { skip }, async (t) => {
  const kept = await node('pi-kept')
  const offline = await node('pi-offline')
  const online = await node('pi-online')
  const direct = await node('pi-direct', { direct: true })
  // pi-kept goes first and is locked: it is offline longest, yet stays listed.
  await kept.daemon.stop()
  t.equal((await auth.ctl(['lock', '--node=pi-kept'])).code, 0)
  await offline.daemon.stop()
  await until('pi-offline to show offline', async () => (await listAll()).rows.get('pi-offline')?.Status === 'offline', { timeoutMs: 30_000 })

  const { headers, rows } = await listAll()
  t.match(headers, /^Node Name\s+Node ID\s+Address\s+Status\s+Last Seen\s+Version\s+Cert Expires\s+Proxies\s+Labels$/)
  const seen = /^\d\d [A-Z][a-z]{2} \d\d \d\d:\d\d UTC \(\d+s ago\)$/
  const expires = (dataDir: string) => new RegExp(`^${certExpiry(dataDir)} \\((\\d+h)?(\\d+m)?\\d+s\\)$`)

  const up = rows.get('pi-online')!
  t.match(up, { 'Node ID': loadIdentity(online.dataDir)!.hostId, Address: '⟵ Tunnel', Status: 'online', Version: VERSION, Proxies: '2/2', Labels: 'site=lab' })
  t.match(up['Last Seen'], seen)
  t.match(up['Cert Expires'], expires(online.dataDir), "its certificate's expiry and the time left")

  const down = rows.get('pi-offline')!
  t.match(down, { Address: '⟵ Tunnel', Status: 'offline', Version: VERSION, Proxies: '0/2' })
  t.match(down['Last Seen'], seen)
  t.match(down['Cert Expires'], expires(offline.dataDir))

  const dialled = rows.get('pi-direct')!
  t.match(dialled, { Address: /^127\.0\.0\.1:\d+$/, Status: 'online', Version: VERSION, Proxies: '-' })
  t.match(dialled['Cert Expires'], expires(direct.dataDir))

  t.equal(rows.get('pi-kept')?.Status, 'locked')
  t.notMatch((await auth.ctl(['nodes', 'ls'])).stdout, 'pi-offline', 'nodes ls alone shows only the nodes online')

  await until('pi-offline to be forgotten', async () => !(await listAll()).rows.has('pi-offline'), { timeoutMs: 60_000, everyMs: 1000 })
  t.equal((await listAll()).rows.get('pi-kept')?.Status, 'locked', 'the locked node, offline for longer, is kept')

  // Forgotten is not removed: back with its own identity, it is listed again.
  daemons.push(startNode([`--config=${offline.config}`]))
  await until('pi-offline to be back', async () => (await listAll()).rows.get('pi-offline')?.Status === 'online', { timeoutMs: 60_000 })
  t.pass('a forgotten node that comes back is listed again')
})
