// Certificates renewed before they lapse, with real processes and lifetimes short enough to
// run several in real time (auth_service.host_cert_ttl and admin_cert_ttl in the config):
// a node in tunnel mode, a direct node, their proxy, the auth server's own TLS certificate
// and warrenctl's identity are each replaced before they expire, for three lifetimes and more, while a
// tunnel and an OpenSSH session stay open across the renewals of both ends; and a renewal
// that races a host CA rotation leaves the registry and the node in agreement.

import { spawn } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { connect } from 'node:tls'
import t from 'tap'
import { SqliteBackend } from '../auth/backend/sqlite.ts'
import type { NodeRecord } from '../auth/nodes.ts'
import { parseHostPort } from '../shared/address.ts'
import { issuedByAny, validNow } from '../shared/cert-subject.ts'
import { renewalDueAt } from '../shared/renewal-window.ts'
import { AuthProcess, openssh, ProxyProcess, signUser, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'
import { until } from './helpers/until.ts'

t.setTimeout(300_000)

const LIFETIME_MS = 15_000

/** The certificate the auth server's API presents now. */
async function authCertificate(address: string): Promise<X509Certificate> {
  const { host, port } = parseHostPort(address, 3025)
  const socket = connect({ host, port, rejectUnauthorized: false })
  await once(socket, 'secureConnect')
  const cert = socket.getPeerX509Certificate()!
  socket.destroy()
  return cert
}

const fileCertificate = (path: string) => new X509Certificate(readFileSync(path, 'utf8'))
const adminCertificate = (auth: AuthProcess) => new X509Certificate(JSON.parse(readFileSync(auth.identityPath, 'utf8')).cert)

/** The host's registry record, read from the auth server's SQLite backend. */
async function registered(auth: AuthProcess, hostId: string): Promise<NodeRecord | undefined> {
  const backend = SqliteBackend.open(join(auth.dataDir, 'backend.db'))
  try {
    const item = await backend.get(`/nodes/${hostId}`)
    return item && (JSON.parse(item.value) as NodeRecord)
  } finally {
    await backend.close()
  }
}

const hostIdOf = (cert: X509Certificate) => /CN=([^\n]+)/.exec(cert.subject)![1]

t.test('a node, a proxy and warrenctl work after three lifetimes; a tunnel and an OpenSSH session survive the renewals of both ends', async (t) => {
  const auth = await new AuthProcess({ authServiceYaml: '  host_cert_ttl: 15s\n  admin_cert_ttl: 15s' }).start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  t.teardown(() => proxy.stop())
  const nodeDir = tempDir()
  const node = startNode([`--data-dir=${nodeDir}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=renewing'])
  t.teardown(() => node.stop())
  const directDir = tempDir()
  const direct = startNode([`--data-dir=${directDir}`, `--auth-server=${auth.address}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=renewing-direct'])
  t.teardown(() => direct.stop())
  await waitForNode(auth, 'renewing')
  await waitForNode(auth, 'renewing-direct')
  const profile = await signUser(auth, proxy.web)
  const login = testLogin()

  // A session opened before any renewal, kept open throughout.
  const session = spawn('ssh', ['-F', join(profile, 'ssh_config'), '-o', 'BatchMode=yes', `${login}@renewing`, 'echo started; cat'], { stdio: ['pipe', 'pipe', 'pipe'] })
  t.teardown(() => session.kill('SIGKILL'))
  let output = ''
  session.stdout!.on('data', (data) => (output += data))
  await until('the SSH session to start', () => output.includes('started'), { timeoutMs: 30_000 })

  const certificates = {
    node: () => fileCertificate(join(nodeDir, 'identity', 'host.crt')),
    direct: () => fileCertificate(join(directDir, 'identity', 'host.crt')),
    proxy: () => fileCertificate(join(proxy.dataDir, 'proxy-identity', 'host.crt')),
    admin: async () => adminCertificate(auth),
    auth: () => authCertificate(auth.address),
  }
  const first = { node: certificates.node(), direct: certificates.direct(), proxy: certificates.proxy(), admin: adminCertificate(auth), auth: await authCertificate(auth.address) }
  for (const [holder, cert] of Object.entries(first)) {
    const lifetime = cert.validToDate.getTime() - cert.validFromDate.getTime()
    t.ok(lifetime <= LIFETIME_MS + 2000, `the ${holder}'s certificate lives about 15 s (${lifetime} ms)`)
  }
  // Every certificate each holder presented, until each has been replaced three times and
  // three lifetimes have passed since the first ones were issued.
  const seen = Object.fromEntries(Object.keys(first).map((holder) => [holder, new Map<string, X509Certificate>()])) as Record<keyof typeof first, Map<string, X509Certificate>>
  const threeLifetimes = Math.max(...Object.values(first).map((cert) => cert.validFromDate.getTime())) + 3 * LIFETIME_MS
  await until(
    'three lifetimes of renewals',
    async () => {
      for (const [holder, current] of Object.entries(certificates)) {
        const cert = await current()
        seen[holder as keyof typeof first].set(cert.fingerprint256, cert)
      }
      return Date.now() > threeLifetimes && Object.values(seen).every((certs) => certs.size >= 4)
    },
    { timeoutMs: 120_000, everyMs: 500 },
  )

  for (const [holder, certs] of Object.entries(seen)) {
    t.ok(certs.size >= 4, `the ${holder}'s certificate was replaced ${certs.size - 1} times`)
    const sorted = [...certs.values()].sort((a, b) => a.validFromDate.getTime() - b.validFromDate.getTime())
    // Each was replaced before it expired: the next one was issued while it was valid.
    t.ok(
      sorted.slice(1).every((cert, i) => cert.validFromDate.getTime() < sorted[i].validToDate.getTime()),
      `each of the ${holder}'s certificates was replaced before it expired`,
    )
    t.notOk(validNow(first[holder as keyof typeof first]), `the ${holder}'s first certificate has expired`)
  }
  t.ok(validNow(certificates.node()) && validNow(certificates.direct()) && validNow(certificates.proxy()), "the nodes' and the proxy's current certificates are valid")

  const ls = await auth.ctl(['nodes', 'ls'])
  t.equal(ls.code, 0, 'warrenctl works with its renewed identity')
  t.match(ls.stdout, /^renewing\s+\S+\s+⟵ Tunnel/m, 'and the node is online through its tunnel')
  const fresh = await openssh(profile, [`${login}@renewing`, 'echo fresh'])
  t.equal(fresh.stdout, 'fresh\n', 'a new SSH connection reaches the node through the proxy', { stderr: fresh.stderr })
  const dialled = await openssh(profile, [`${login}@renewing-direct`, 'echo direct'])
  t.equal(dialled.stdout, 'direct\n', 'and the direct node, which the proxy dials with its renewed certificate', { stderr: dialled.stderr })
  session.stdin!.write('still-here\n')
  await until('the live session to echo', () => output.includes('still-here'), { timeoutMs: 15_000 })
  t.equal(session.exitCode, null, 'the session opened before the first renewal is still open')

  const hostId = hostIdOf(certificates.node())
  const record = await registered(auth, hostId)
  t.ok(record?.certExpires !== undefined && record.certExpires >= first.node.validToDate.getTime() + 3 * 10_000, 'the registry records a later expiry with each renewal')
})

t.test('a renewal that races a host CA rotation leaves the registry and the node in agreement', async (t) => {
  // Long enough that, after the rotation, no renewal by the window comes before the checks.
  const lifetime = 60_000
  const auth = await new AuthProcess({ authServiceYaml: '  host_cert_ttl: 60s' }).start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  t.teardown(() => proxy.stop())
  const nodeDir = tempDir()
  const node = startNode([`--data-dir=${nodeDir}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=racing'])
  t.teardown(() => node.stop())
  await waitForNode(auth, 'racing')
  const nodeCert = () => fileCertificate(join(nodeDir, 'identity', 'host.crt'))
  const joined = nodeCert()
  const rotate = (phase: string) => auth.api('POST', '/v1/rotate', { type: 'host', manual: true, phase })

  await rotate('init')
  // The new CA starts signing the moment the node's certificate enters its renewal window.
  await sleep(Math.max(0, renewalDueAt(joined) - Date.now()))
  await rotate('update_clients')
  const signing = (await auth.api<{ host_ca_certs: string[] }>('GET', '/v1/ca')).host_ca_certs[0]
  await until('the node to hold a certificate from the new CA', () => issuedByAny(nodeCert(), [signing]), { timeoutMs: 30_000 })
  await until('the proxy to hold one too', () => issuedByAny(fileCertificate(join(proxy.dataDir, 'proxy-identity', 'host.crt')), [signing]), { timeoutMs: 30_000 })
  await rotate('update_servers')
  await rotate('standby')
  t.match((await auth.ctl(['status'])).stdout, /Host CA\s+rotated /)

  const cert = nodeCert()
  t.ok(Date.now() < renewalDueAt(cert), 'no renewal is due before the checks below', { due: new Date(renewalDueAt(cert)).toISOString() })
  t.ok(issuedByAny(cert, [signing]), 'the node ends with a certificate from the CA that signs')
  t.not(cert.fingerprint256, joined.fingerprint256)
  const record = await registered(auth, hostIdOf(cert))
  t.equal(record?.certExpires, cert.validToDate.getTime(), 'the registry records the expiry of the certificate the node holds')
  t.ok(cert.validToDate.getTime() - cert.validFromDate.getTime() <= lifetime + 6_000, 'with the configured lifetime')
  const proxyCert = fileCertificate(join(proxy.dataDir, 'proxy-identity', 'host.crt'))
  t.equal((await registered(auth, hostIdOf(proxyCert)))?.certExpires, proxyCert.validToDate.getTime(), "and the proxy's")
  t.ok(node.running, 'the node runs on')
  const ls = await auth.ctl(['nodes', 'ls'])
  t.match(ls.stdout, /^racing\s+\S+\s+⟵ Tunnel/m, 'online through its tunnel after the rotation')
})
