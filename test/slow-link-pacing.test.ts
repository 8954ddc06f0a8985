// A tunnel over a slow link is paced: every session of a device shares that one connection,
// and unpaced, a copy off the device queues a whole stream window in the kernel ahead of
// every other session's keystrokes (`npm run bench:slow-link` measures the wait). Each end
// finds the link slow from long waits for the other's window, then keeps the kernel's
// unsent queue short and spaces its writes. Shown here on a real link held to 2 Mbit/s by a token
// bucket, with the state the node and the proxy report: not on a fast link, on once the link
// is slow (the node for its uplink, the proxy for the node's downlink), and "unavailable" on
// a node without perl, which cannot limit the kernel's queue.

import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { WarrenStatus } from '../shared/status.ts'
import { authAndProxy, Daemon, freePort, openssh, signUser, startNode, tempDir, testLogin, waitForNode, warren } from './helpers/cluster.ts'
import { createSlowLink, slowLinkUnavailable } from './helpers/slow-link.ts'

const unavailable = slowLinkUnavailable()
if (unavailable) {
  t.plan(0, unavailable)
  process.exit(0)
}
t.setTimeout(180_000)

/** Under the token bucket's rate (2 Mbit/s, 250 KB/s): several seconds of copying. */
const COPY_BYTES = 1_000_000

async function pacingOf(dataDir: string): Promise<string[]> {
  const result = await warren(['status', `--data-dir=${dataDir}`, '--format=json'])
  if (result.code !== 0) throw new Error(`warren status failed: ${result.stderr}`)
  return (JSON.parse(result.stdout) as WarrenStatus).node!.tunnel!.proxies.map((proxy) => proxy.pacing)
}

const link = createSlowLink()
t.teardown(() => link.remove())
const { auth, pin, proxy } = await authAndProxy(t, {
  webListenAddr: `${link.hostSide}:${await freePort()}`,
  tunnelListenAddr: `${link.hostSide}:${await freePort()}`,
})

const joinArgs = async (name: string, dataDir: string) => [
  `--data-dir=${dataDir}`,
  `--auth-server=${proxy.web}`,
  `--token=${await auth.token()}`,
  `--ca-pin=${pin}`,
  `--nodename=${name}`,
]
const deviceDir = tempDir()
const device = startNode(await joinArgs('device', deviceDir), {}, link.ns)
t.teardown(() => device.stop())
// The same device without perl: /dev/null over it, in a mount namespace of the node's own.
const perlless = tempDir()
const config = join(tempDir(), 'node.yaml')
writeFileSync(config, 'ssh_service:\n  listen_addr: 127.0.0.1:0\n')
const withoutPerl = new Daemon(['start', '--roles=node', `--config=${config}`, ...(await joinArgs('no-perl', perlless))], {}, link.ns, [
  'unshare',
  '--mount',
  '--propagation=private',
  'sh',
  '-c',
  'mount --bind /dev/null /usr/bin/perl && exec "$@"',
  'sh',
])
t.teardown(() => withoutPerl.stop())
await waitForNode(auth, 'device', 60_000)
await waitForNode(auth, 'no-perl', 60_000)
const login = testLogin()
const profile = await signUser(auth, proxy.web, 'alice', undefined, login)

/** How the proxy paces what it sends down each node's tunnel, by node name. */
async function proxyPacing(): Promise<Record<string, string>> {
  const hosts = (await proxy.daemon.status()).proxy!.tunnels.hosts
  return Object.fromEntries(hosts.map((host) => [host.nodename, host.pacing]))
}

async function copyTo(node: string): Promise<number> {
  const copy = await openssh(profile, [`${login}@${node}`, 'wc -c'], { timeoutMs: 120_000, input: 'x'.repeat(COPY_BYTES) })
  if (copy.code !== 0) throw new Error(`the copy to ${node} failed (${copy.code}): ${copy.stderr}`)
  return Number(copy.stdout.trim())
}

async function copyOff(node: string): Promise<number> {
  const copy = await openssh(profile, [`${login}@${node}`, `head -c ${COPY_BYTES} /dev/zero`], { timeoutMs: 120_000 })
  if (copy.code !== 0) throw new Error(`the copy off ${node} failed (${copy.code}): ${copy.stderr}`)
  return copy.stdout.length
}

t.test('a fast link is not paced', async (t) => {
  t.same(await pacingOf(deviceDir), ['off'], 'before any traffic')
  t.equal(await copyOff('device'), COPY_BYTES)
  t.equal(await copyTo('device'), COPY_BYTES)
  t.same(await pacingOf(deviceDir), ['off'], 'after copies each way at the full speed of the veth pair')
  t.same(await proxyPacing(), { device: 'off', 'no-perl': 'off' }, 'nor by the proxy')
})

t.test('a slow uplink is found and paced', async (t) => {
  link.limit('2mbit')
  t.teardown(() => link.unlimit())
  t.equal(await copyOff('device'), COPY_BYTES, 'the copy arrives whole')
  t.same(await pacingOf(deviceDir), ['on'])
  t.equal(await copyOff('device'), COPY_BYTES, 'and so does the next one, paced')
  t.same(await proxyPacing(), { device: 'off', 'no-perl': 'off' }, 'the proxy sent little: its side is not paced')
})

t.test('a slow downlink is found and paced by the proxy', async (t) => {
  link.limit('2mbit')
  t.teardown(() => link.unlimit())
  t.equal(await copyTo('device'), COPY_BYTES, 'the copy arrives whole')
  t.same(await proxyPacing(), { device: 'on', 'no-perl': 'off' })
  t.equal(await copyTo('device'), COPY_BYTES, 'and so does the next one, paced')
})

t.test('without perl the node says it cannot pace', async (t) => {
  link.limit('2mbit')
  t.teardown(() => link.unlimit())
  t.equal(await copyOff('no-perl'), COPY_BYTES)
  t.same(await pacingOf(perlless), ['unavailable'])
})
