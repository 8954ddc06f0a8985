// End to end behind real NAT (network namespaces, nftables masquerade): a device that can
// only dial out joins through the proxy and is reached by a stock OpenSSH client on the WAN,
// while the WAN cannot connect to it directly. Then the router silently drops the tunnel's
// packets: the agent notices within two keepalive intervals and comes back once healed.
// Next to them, a node on the WAN side joins the auth server directly: the proxy dials it
// on port 3022, where nothing but a proxy certificate of the cluster opens a service.

import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { PROFILE_FILES } from '../cli/profile.ts'
import { identityDir } from '../shared/identity-store.ts'
import type { WarrenStatus } from '../shared/status.ts'
import { AuthProcess, openssh, ProxyProcess, run, signUser, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'
import type { ProbeResult } from './helpers/direct-probe.ts'
import { createNat, natUnavailable } from './helpers/nat.ts'

const PROBE = join(import.meta.dirname, 'helpers', 'direct-probe.ts')

const KEEPALIVE_MS = 2000
const unavailable = natUnavailable()

t.test('a device behind NAT is reachable only through its tunnel', { skip: unavailable }, async (t) => {
  const nat = createNat()
  t.teardown(() => nat.remove())
  const auth = await new AuthProcess({ netns: nat.wan, host: nat.wanAddress }).start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({
    auth,
    token: await auth.token(['tokens', 'add', '--type=proxy']),
    pin,
    webListenAddr: `${nat.wanAddress}:3080`,
    tunnelListenAddr: `${nat.wanAddress}:3024`,
    extraYaml: `keepalive_interval: ${KEEPALIVE_MS / 1000}s`,
    netns: nat.wan,
  }).start()
  t.teardown(() => proxy.stop())

  const nodeDir = tempDir()
  const nodeConfig = join(nodeDir, 'warren.yaml')
  writeFileSync(nodeConfig, `version: v1\ndata_dir: ${nodeDir}\nnodename: device\nkeepalive_interval: ${KEEPALIVE_MS / 1000}s\n`)
  const node = startNode([`--config=${nodeConfig}`, `--auth-server=${nat.wanAddress}:3080`, `--token=${await auth.token()}`, `--ca-pin=${pin}`], {}, nat.lan)
  t.teardown(() => node.stop())
  t.match(await waitForNode(auth, 'device'), /^device\s+\S+\s+⟵ Tunnel/m)
  const atProxy = (await proxy.daemon.status()).proxy!.tunnels.hosts
  t.same(
    atProxy.map((tunnel) => [tunnel.nodename, tunnel.remote_addr]),
    [['device', nat.routerWanAddress]],
    "the proxy sees the router's address, not the device's",
  )

  // The WAN cannot open a connection to the device.
  const direct = execFileSync(
    'ip',
    [
      'netns',
      'exec',
      nat.wan,
      process.execPath,
      '-e',
      `
    const s = require('net').connect({ host: '${nat.deviceAddress}', port: 22, timeout: 2000 })
    s.on('connect', () => { console.log('connected'); process.exit(0) })
    s.on('error', (e) => { console.log('failed: ' + e.code); process.exit(0) })
    s.on('timeout', () => { console.log('failed: timeout'); process.exit(0) })
  `,
    ],
    { encoding: 'utf8' },
  )
  t.match(direct, /^failed: /, `a direct connection from the WAN fails (${direct.trim()})`)

  const profile = await signUser(auth, `${nat.wanAddress}:3080`)
  const result = await openssh(profile, [`${testLogin()}@device`, `ip -4 -o addr show | grep -c ${nat.deviceAddress}; exit 7`], { netns: nat.wan })
  t.equal(result.code, 7, `exit status through the tunnel (${result.stderr})`)
  t.equal(result.stdout.trim(), '1', 'the command ran on the device (it holds the LAN address)')

  t.test('silent drop: noticed within two keepalive intervals, healed by a fresh tunnel', async (t) => {
    const tunnels = (status: WarrenStatus) => status.node?.tunnel?.proxies ?? []
    const [before] = tunnels(await node.waitForStatus('the tunnel', (status) => tunnels(status).length === 1))
    nat.dropForwarded()
    await node.waitForStatus('the agent to notice the dead tunnel', (status) => tunnels(status).length === 0, 2 * KEEPALIVE_MS + 1500)
    t.pass('the agent noticed the silent drop')
    nat.heal()
    const [fresh] = tunnels(await node.waitForStatus('a fresh tunnel', (status) => tunnels(status).length === 1, 30_000))
    t.not(fresh.since, before.since, 'a new tunnel')
    const again = await openssh(profile, [`${testLogin()}@device`, 'echo back'], { netns: nat.wan })
    t.equal(again.code, 0, again.stderr)
    t.equal(again.stdout, 'back\n')
  })

  t.test('a direct node on the WAN side: reached through the proxy, refused to anyone else', async (t) => {
    const siteDir = tempDir()
    const siteConfig = join(siteDir, 'warren.yaml')
    // The default listen address, 0.0.0.0:3022: the namespace has it to itself.
    writeFileSync(siteConfig, `version: v1\ndata_dir: ${siteDir}\nnodename: site-node\n`)
    const site = startNode([`--config=${siteConfig}`, `--auth-server=${auth.address}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`], {}, nat.site)
    t.teardown(() => site.stop())
    const address = `${nat.siteAddress}:3022`
    t.match(await waitForNode(auth, 'site-node'), new RegExp(`^site-node\\s+\\S+\\s+${address.replace(/\./g, '\\.')}\\s*$`, 'm'), 'nodes ls shows where the proxy dials it')

    // Signed now, so that its known_hosts holds the new node's host key.
    const siteProfile = await signUser(auth, `${nat.wanAddress}:3080`, 'bob')
    const result = await openssh(siteProfile, [`${testLogin()}@site-node`, `ip -4 -o addr show | grep -c ${nat.siteAddress}; exit 5`], { netns: nat.wan })
    t.equal(result.code, 5, `exit status from the direct node (${result.stderr})`)
    t.equal(result.stdout.trim(), '1', 'the command ran on the direct node (it holds the site address)')

    /** The probe run from the WAN, with a certificate and key file, or none. */
    const probe = async (files: string[] = []): Promise<ProbeResult> => JSON.parse((await run(PROBE, [nat.siteAddress, '3022', ...files], { netns: nat.wan })).stdout)
    const identityFiles = (dir: string) => [join(dir, 'host.crt'), join(dir, 'host.key')]
    const accepted = await probe(identityFiles(identityDir(proxy.dataDir, 'proxy')))
    t.match(accepted.reply, /^\{"ok":true\}\nSSH-2\.0-/, 'a proxy certificate opens the SSH service')
    const refusals: [string, string[]][] = [
      ['no certificate', []],
      ["a node's certificate", identityFiles(identityDir(siteDir))],
      ["a user's certificate", [join(siteProfile, PROFILE_FILES.tlsCert), join(siteProfile, PROFILE_FILES.tlsKey)]],
    ]
    for (const [what, files] of refusals) {
      const refused = await probe(files)
      t.equal(refused.reply, '', `${what}: refused before any service opens, not a byte back`)
      t.equal(refused.error, undefined, `${what}: the node closed the connection`)
    }
  })
})
