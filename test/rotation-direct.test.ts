// A node that heartbeats straight to the auth server (no proxy, no tunnel) follows a host CA
// rotation through its heartbeat answers: it trusts the new CA before the auth server
// presents it, renews its certificates with its current identity, and keeps heartbeating
// after the old CA is dropped; restarted afterwards it needs no token.

import t from 'tap'
import { X509Certificate } from 'node:crypto'
import { AuthProcess, openssh, ProxyProcess, signUser, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'
import { issuedByAny } from '../shared/cert-subject.ts'
import { loadIdentity } from '../shared/identity-store.ts'

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
  const logged = (pattern: RegExp) => node.stderr.split('\n').filter((line) => pattern.test(line)).length

  await rotate('init')
  await node.waitFor('the node to trust the new CA', () => logged(/trusted CAs updated/) >= 1, 20_000)
  await rotate('update_clients')
  const signing = (await auth.api<{ host_ca_certs: string[] }>('GET', '/v1/ca')).host_ca_certs[0]
  await node.waitFor('the node to renew from the new CA', () => issuedByAny(new X509Certificate(loadIdentity(dataDir)!.tlsCertPem), [signing]), 20_000)
  await rotate('update_servers')
  await rotate('standby')
  const afterStandby = node.stderr.length
  const caCerts = (await auth.api<{ host_ca_certs: string[] }>('GET', '/v1/ca')).host_ca_certs
  t.equal(caCerts.length, 1, 'only the new host CA is left')


  // Two heartbeat intervals (5 s) after standby: beats still reach the auth server.
  await new Promise((resolve) => setTimeout(resolve, 11_000))
  t.notMatch(node.stderr.slice(afterStandby), /heartbeat to .* failed/, 'no heartbeat failed after the old CA was dropped')
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
  await new Promise((resolve) => setTimeout(resolve, 8_000))
  t.ok(again.running, 'the restarted node runs')
  t.notMatch(again.stderr, /heartbeat to .* failed|ERROR/, 'and its heartbeats are accepted')
})
