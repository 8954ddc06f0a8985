// A proxy's keys stolen: the attacker stops the proxy and serves its tunnel address with
// them, so the node's agent (a real `warren start` process) reconnects to the attacker.
// The attacker then tells the node to trust a CA of its own, and tries to log in over the
// tunnel with a user certificate that CA signed. The node must keep trusting what the auth
// server signed, and refuse the login; the cluster's own users still get in.

import { execFile, execFileSync, spawnSync } from 'node:child_process'
import { createPrivateKey } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { createServer as createHttpsServer } from 'node:https'
import { type AddressInfo, createServer as createTcpServer, type Server } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { ApiClient } from '../shared/api-client.ts'
import { identityDir, loadIdentity } from '../shared/identity-store.ts'
import { sendToAgent } from '../shared/protocol/control.ts'
import { splice } from '../shared/splice.ts'
import type { NodeStatus } from '../shared/status.ts'
import { signTrust, type TrustStatement } from '../shared/trust-statement.ts'
import { createCA, createCertificate } from '../shared/x509.ts'
import { AuthProcess, ProxyProcess, signUser, startNode, tempDir, testLogin, waitForNode, warren } from './helpers/cluster.ts'
import { listenAsStolenProxy, rogueTunnelServer } from './helpers/rogue-tunnels.ts'
import { until } from './helpers/until.ts'

const cannot = process.getuid?.() !== 0 ? 'needs root to create a throwaway login' : spawnSync('ssh', ['-V']).status !== 0 ? 'needs the OpenSSH client' : undefined

t.test('a stolen proxy key cannot make a node trust another CA, nor log in with it', { timeout: 180_000, skip: cannot }, async (t) => {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  t.teardown(() => proxy.stop())
  const nodeDir = tempDir()
  const node = startNode([`--data-dir=${nodeDir}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=pi-1'])
  t.teardown(() => node.stop())
  await waitForNode(auth, 'pi-1')
  const login = testLogin()
  const user = await signUser(auth, proxy.web)
  const nodeStatus = async () => (await node.status()).node as NodeStatus
  // A set the auth server signed, as any proxy can fetch it; then a user CA rotation begins
  // and the node takes the newer set from the real proxy.
  const stolen = loadIdentity(proxy.dataDir, 'proxy')!
  const fetchSigned = async () => {
    const api = new ApiClient({ server: auth.address, caPems: stolen.hostCAPems, certPem: stolen.tlsCertPem, keyPem: stolen.tlsKeyPem })
    try {
      return (await api.call('POST /v1/proxies/heartbeat', { body: {} })).trust
    } finally {
      await api.close()
    }
  }
  const older = await fetchSigned()
  t.equal((await auth.ctl(['auth', 'rotate', '--type=user', '--manual', '--phase=init'])).code, 0)
  await until('the node to take the rotation', async () => (await nodeStatus()).trust.version > older.version, { timeoutMs: 30_000 })
  const trusted = await nodeStatus()
  const stored = () => ({
    hostCAs: readFileSync(join(identityDir(nodeDir), 'host_ca.pem'), 'utf8'),
    userCAs: JSON.parse(readFileSync(join(identityDir(nodeDir), 'identity.json'), 'utf8')).user_ca_ssh_keys,
  })
  const storedBefore = stored()
  const trustedCert = readFileSync(join(identityDir(nodeDir), 'host.crt'), 'utf8')

  // The attacker has the proxy's identity and takes its tunnel address.
  await proxy.stop()
  const rogue = rogueTunnelServer(stolen)
  const tunnelListener = await listenAsStolenProxy(stolen, proxy.tunnel, rogue)
  t.teardown(() => {
    rogue.close()
    tunnelListener.close()
  })
  await until('the node to reconnect to the stolen address', () => rogue.size === 1, { timeoutMs: 60_000 })

  // The attacker's own CAs: a host CA (X.509) and a user CA (OpenSSH), and a user key it signed for the login.
  const attackerHostCA = createCA('attacker host CA', stolen.clusterName)
  const keys = tempDir('warren-attacker-')
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'attacker user CA', '-f', join(keys, 'user_ca')])
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(keys, 'id_ed25519')])
  execFileSync('ssh-keygen', ['-q', '-s', join(keys, 'user_ca'), '-I', 'attacker', '-n', login, '-V', '-5m:+1h', join(keys, 'id_ed25519.pub')])
  const attackerUserCA = readFileSync(join(keys, 'user_ca.pub'), 'utf8').trim()
  const forgedSet = { cluster_name: stolen.clusterName, version: Date.now() + 365 * 86_400_000, host_ca_certs: [attackerHostCA.certPem], user_ca_ssh_keys: [attackerUserCA] }
  const genuine = await fetchSigned()
  const forgeries: Record<string, TrustStatement | undefined> = {
    'the lists alone, unsigned': undefined,
    'signed by a CA of its own': signTrust(forgedSet, [{ certPem: attackerHostCA.certPem, key: attackerHostCA.key }]),
    "signed with the proxy's own key": signTrust(forgedSet, [{ certPem: stolen.tlsCertPem, key: createPrivateKey(stolen.tlsKeyPem) }]),
    "the auth server's signatures over another set": { ...genuine, version: forgedSet.version, user_ca_ssh_keys: [attackerUserCA] },
    'an older set the auth server signed, from before the rotation': older,
  }
  for (const [what, trust] of Object.entries(forgeries)) {
    const { refused } = (await nodeStatus()).trust
    rogue.announceCA({ host_ca_certs: [attackerHostCA.certPem], user_ca_ssh_keys: [attackerUserCA], trust })
    await until(`the node to refuse ${what}`, async () => (await nodeStatus()).trust.refused === refused + 1, { timeoutMs: 10_000 })
  }
  // Certificates for the node's own key from the attacker's CA, unasked, with the attacker's CAs.
  const tunnel = rogue.list()[0]!
  const forgedCert = createCertificate({
    subject: { CN: tunnel.hostId, O: stolen.clusterName, OU: ['node'], name: 'pi-1' },
    issuer: { CN: 'attacker host CA', O: stolen.clusterName },
    publicKey: tunnel.cert.publicKey,
    signingKey: attackerHostCA.key,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
    extKeyUsage: ['serverAuth', 'clientAuth'],
  })
  const { refused } = (await nodeStatus()).trust
  sendToAgent(tunnel.control!, {
    type: 'certs',
    tls_cert: forgedCert,
    ssh_cert: readFileSync(join(identityDir(nodeDir), 'ssh_host_ed25519_key-cert.pub'), 'utf8'),
    host_ca_certs: [attackerHostCA.certPem],
    user_ca_ssh_keys: [attackerUserCA],
    trust: forgeries['signed by a CA of its own'],
  })
  await until('the node to refuse the certificates', async () => (await nodeStatus()).trust.refused === refused + 1, { timeoutMs: 10_000 })
  const after = await nodeStatus()
  t.same(after.certificate, trusted.certificate, 'the node keeps its certificate')
  t.same(after.trusted_host_ca_pins, trusted.trusted_host_ca_pins, 'the node trusts the host CAs it trusted')
  t.equal(after.trust.version, trusted.trust.version, 'and holds the same signed set')
  t.same(stored(), storedBefore, 'nothing else was written to its identity')
  t.equal(readFileSync(join(identityDir(nodeDir), 'host.crt'), 'utf8'), trustedCert, 'its certificate on disk is the one it had')

  // Logins over the attacker's tunnel: OpenSSH through a local port that dials the node.
  const bridge: Server = createTcpServer((socket) => {
    rogue.dial('pi-1', { service: 'ssh' }).then(
      (stream) => splice(socket, stream),
      () => socket.destroy(),
    )
  })
  bridge.listen(0, '127.0.0.1')
  await once(bridge, 'listening')
  t.teardown(() => bridge.close())
  // Asynchronously: the bridge runs in this process.
  const ssh = (identity: string) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const port = String((bridge.address() as { port: number }).port)
      const options = ['IdentitiesOnly=yes', 'BatchMode=yes', 'StrictHostKeyChecking=no', 'UserKnownHostsFile=/dev/null'].flatMap((option) => ['-o', option])
      execFile('ssh', ['-p', port, '-i', identity, ...options, `${login}@127.0.0.1`, 'echo logged-in'], { timeout: 30_000 }, (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr }),
      )
    })
  const attacker = await ssh(join(keys, 'id_ed25519'))
  t.equal(attacker.code, 255, 'a certificate from the attacker’s user CA is refused')
  t.match(attacker.stderr, /Permission denied/, 'by the node, at authentication')
  t.notMatch(attacker.stdout, /logged-in/)
  const member = await ssh(join(user, 'id_ed25519'))
  t.equal(member.code, 0, `a certificate from the cluster's user CA still logs in (${member.stderr.trim()})`)
  t.match(member.stdout, /logged-in/)
})

// No throwaway login needed here: as another user, the test's own account is the login.
t.test("a stolen proxy key cannot hand users a node's host key of its own", { timeout: 120_000 }, async (t) => {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  t.teardown(() => proxy.stop())
  const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=pi-1'])
  t.teardown(() => node.stop())
  await waitForNode(auth, 'pi-1')
  const user = await signUser(auth, proxy.web)
  const real = await warren(['known-hosts', `--identity=${user}`, `--proxy=${proxy.web}`])
  t.equal(real.code, 0, 'the real proxy answers with what the auth server signed')
  const line = real.stdout.split('\n').find((l) => l.startsWith('pi-1,'))!
  t.ok(line, "pi-1's host key")

  // The attacker answers the web API at an address the user is sent to, with the proxy's keys.
  const stolen = loadIdentity(proxy.dataDir, 'proxy')!
  const genuine = await new ApiClient({
    server: proxy.web,
    caPems: stolen.hostCAPems,
    certPem: readFileSync(join(user, 'tls.crt'), 'utf8'),
    keyPem: readFileSync(join(user, 'tls.key'), 'utf8'),
  })
  const signed = await genuine.call('GET /v1/known-hosts')
  await genuine.close()
  const keyDir = tempDir('warren-attacker-')
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(keyDir, 'host_key')])
  const attackerKey = `${line.split(' ')[0]} ${readFileSync(join(keyDir, 'host_key.pub'), 'utf8').split(' ').slice(0, 2).join(' ')}`
  let answer: object = {}
  const rogue = createHttpsServer({ cert: stolen.tlsCertPem, key: stolen.tlsKeyPem, ca: stolen.hostCAPems, requestCert: true, rejectUnauthorized: false }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer))
  })
  rogue.listen(0, '127.0.0.1')
  await once(rogue, 'listening')
  t.teardown(() => rogue.close())
  const rogueWeb = `127.0.0.1:${(rogue.address() as AddressInfo).port}`
  const forgeries: Record<string, object> = {
    'unsigned lines': { known_hosts: [attackerKey] },
    "the auth server's signatures over other lines": { ...signed, known_hosts: [attackerKey] },
  }
  for (const [what, forged] of Object.entries(forgeries)) {
    answer = forged
    const fetched = await warren(['known-hosts', `--identity=${user}`, `--proxy=${rogueWeb}`])
    t.equal(fetched.code, 1, `${what}: refused`)
    t.equal(fetched.stdout, '', `${what}: no host key is printed`)
  }
  // The attacker's server is reached and read: what the auth server signed passes through it.
  answer = signed
  const relayed = await warren(['known-hosts', `--identity=${user}`, `--proxy=${rogueWeb}`])
  t.equal(relayed.code, 0, 'the genuine list, relayed as it is, is taken')
  t.ok(relayed.stdout.split('\n').includes(line))
})
