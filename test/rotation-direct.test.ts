// A node that heartbeats straight to the auth server (no proxy, no tunnel) follows a host CA
// rotation through its heartbeat answers: it trusts the new CA before the auth server
// presents it, renews its certificates with its current identity, and keeps heartbeating
// after the old CA is dropped; restarted afterwards it needs no token.

import { X509Certificate } from 'node:crypto'
import t from 'tap'
import { issuedByAny } from '../shared/cert-subject.ts'
import { loadIdentity } from '../shared/identity-store.ts'
import type { WarrenStatus } from '../shared/status.ts'
import { AuthProcess, openssh, ProxyProcess, signUser, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'

t.test('a direct-mode node through a whole host CA rotation', async (t) => {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  t.teardown(() => proxy.stop())
  const dataDir = tempDir()
  const node = startNode([`--data-dir=${dataDir}`, `--auth-server=${auth.address}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=direct-1'])
  t.teardown(() => node.stop())
  await waitForNode(auth, 'direct-1')

  const rotate = async (phase: string) => {
    const result = await auth.ctl(['auth', 'rotate', '--type=host', '--manual', `--phase=${phase}`])
    t.equal(result.code, 0, `phase ${phase}: ${result.stdout.trim()}${result.stderr.trim()}`)
  }
  const heartbeats = (status: WarrenStatus) => status.node?.direct?.heartbeats ?? { ok: 0, failed: 0 }

  await rotate('init')
  const trusting = await node.waitForStatus('the node to trust the new CA', (status) => status.node?.trusted_host_ca_pins.length === 2, 20_000)
  const newPin = trusting.node!.trusted_host_ca_pins.find((trusted) => trusted !== pin)!
  t.ok(trusting.node!.trusted_host_ca_pins.includes(pin), 'next to the old one')
  await rotate('update_clients')
  await node.waitForStatus('the node to renew', (status) => status.node?.certificate.issuer_pin === newPin, 20_000)
  await rotate('update_servers')
  await rotate('standby')
  const atStandby = heartbeats(await node.status())
  const caCerts = (await auth.api<{ host_ca_certs: string[] }>('GET', '/v1/ca')).host_ca_certs
  t.equal(caCerts.length, 1, 'only the new host CA is left')

  // Two heartbeats after standby: they still reach the auth server.
  const later = await node.waitForStatus('two heartbeats after standby', (status) => heartbeats(status).ok >= atStandby.ok + 2, 20_000)
  t.equal(heartbeats(later).failed, atStandby.failed, 'no heartbeat failed after the old CA was dropped')
  t.match((await auth.ctl(['nodes', 'ls'])).stdout, /direct-1/, 'the node is present')
  const stored = loadIdentity(dataDir)!
  t.ok(issuedByAny(new X509Certificate(stored.tlsCertPem), caCerts), 'the stored certificate is from the new CA')
  t.same(stored.hostCAPems, caCerts, 'and the stored trust is the new CA alone')

  // Signed now, so that the user trusts the proxy's new certificate.
  const profile = await signUser(auth, proxy.web)
  const reached = await openssh(profile, [`${testLogin()}@direct-1`, 'exit 4'])
  t.equal(reached.code, 4, `the proxy dials the node with the new CA on both ends (${reached.stderr.trim()})`)

  // Restarted with its stored identity (no token), it joins nothing and heartbeats at once.
  await node.stop()
  const again = startNode([`--data-dir=${dataDir}`, `--auth-server=${auth.address}`, '--nodename=direct-1'])
  t.teardown(() => again.stop())
  const restarted = await again.waitForStatus('two heartbeats after the restart', (status) => heartbeats(status).ok >= 2, 20_000)
  t.equal(heartbeats(restarted).failed, 0, 'its heartbeats are accepted')
  t.equal(restarted.node!.certificate.issuer_pin, newPin, 'with the renewed certificate')
})
