// ACME on a real proxy process, against Pebble (Debian `pebble`) with pebble-challtestsrv as
// its DNS: the proxy obtains a certificate for its public name by TLS-ALPN-01 on its
// multiplexed port (or by HTTP-01 on its port-80 listener), serves it to clients asking for
// that name while cluster clients keep the host-CA certificate their pin checks, keeps it in
// the cluster's backend across a restart, renews it without touching live tunnels or SSH
// sessions, and says plainly why when the ACME server refuses. A stolen proxy's keys can write
// the shared records, yet a certificate they plant is not served and the account keeps its key.

import { spawn } from 'node:child_process'
import { generateKeyPairSync, X509Certificate } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { join } from 'node:path'
import { connect } from 'node:tls'
import t from 'tap'
import { ApiClient } from '../shared/api-client.ts'
import { loadIdentity } from '../shared/identity-store.ts'
import type { WarrenStatus } from '../shared/status.ts'
import { selfSignedFor } from './helpers/certs.ts'
import { AuthProcess, freePort, ProxyProcess, signUser, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'
import { ChallTestServer, Pebble, pebbleMissing } from './helpers/pebble.ts'

const DOMAIN = 'proxy.warren.test'
const RENEWING = 'renewing.warren.test'
const BLOCKED = 'blocked.warren.test'
const SHORT_VALIDITY_SECONDS = 20
// As Let's Encrypt's: Pebble's default of five years is more than a stored certificate may last.
const VALIDITY_SECONDS = 90 * 86_400

const missing = pebbleMissing()
if (missing) {
  t.test('ACME certificates on the proxy', { skip: missing }, () => {})
} else {
  await main()
}

async function main(): Promise<void> {
  const dns = await new ChallTestServer().start()
  t.teardown(() => dns.stop())
  for (const name of [DOMAIN, RENEWING, BLOCKED]) await dns.addA(name, '127.0.0.1')

  // Pebble validates on fixed ports, so each proxy's ports are chosen before its Pebble starts.
  const webPort = await freePort()
  const renewingWebPort = await freePort()
  const renewingHttpPort = await freePort()
  const pebble = await new Pebble({ dnsServer: dns.dnsAddress, tlsPort: webPort, httpPort: await freePort(), blocklist: [BLOCKED], validitySeconds: VALIDITY_SECONDS }).start()
  t.teardown(() => pebble.stop())
  const shortLived = await new Pebble({ dnsServer: dns.dnsAddress, tlsPort: renewingWebPort, httpPort: renewingHttpPort, validitySeconds: SHORT_VALIDITY_SECONDS }).start()
  t.teardown(() => shortLived.stop())

  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()

  /** A proxy serving web and tunnel on one port, with ACME for `domain` from `server`. */
  async function acmeProxy(server: Pebble, domain: string, port: number, extra = ''): Promise<ProxyProcess> {
    // The root of Pebble's HTTPS, and the one it issues from: a certificate from the backend is served only if it chains to a trusted root.
    const caFile = join(tempDir(), 'acme-ca.pem')
    writeFileSync(caFile, `${server.caBundle}\n${await server.root()}`)
    const address = `127.0.0.1:${port}`
    return new ProxyProcess({
      auth,
      token: await auth.token(['tokens', 'add', '--type=proxy']),
      pin,
      nodename: domain.split('.')[0],
      webListenAddr: address,
      tunnelListenAddr: address,
      extraYaml: [
        `  public_addr: ["${domain}:${port}"]`,
        '  acme:',
        '    enabled: true',
        '    email: ops@warren.test',
        `    uri: ${server.directoryUrl}`,
        `    ca_file: ${caFile}`,
        extra,
      ].join('\n'),
    })
  }

  /** What a browser trusting only Pebble's root sees at the proxy's web port when it asks for `servername`. */
  async function peerCertificate(server: Pebble | undefined, port: number, servername: string): Promise<X509Certificate> {
    const ca = server ? await server.root() : undefined
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, servername, ALPNProtocols: ['http/1.1'], ...(ca ? { ca } : { rejectUnauthorized: false }) }, () => {
        const peer = socket.getPeerX509Certificate()!
        socket.end()
        resolve(peer)
      })
      socket.on('error', reject)
    })
  }
  /** GET /v1/health over HTTPS, verified against Pebble's root and the name. */
  async function health(server: Pebble, port: number, servername: string): Promise<string> {
    const ca = await server.root()
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, servername, ca, ALPNProtocols: ['http/1.1'] }, () => {
        socket.write(`GET /v1/health HTTP/1.1\r\nhost: ${servername}\r\nconnection: close\r\n\r\n`)
      })
      let text = ''
      socket.setEncoding('utf8')
      socket.on('data', (chunk: string) => (text += chunk))
      socket.on('end', () => resolve(text))
      socket.on('error', reject)
    })
  }
  /** The proxy's ACME state, once it serves an ACME certificate that `accept` (if given) accepts. */
  const acmeServed = async (proxy: ProxyProcess, timeoutMs: number, accept = (_fingerprint: string) => true) =>
    (
      await proxy.daemon.waitForStatus(
        'the ACME certificate',
        (status) => {
          const served = status.proxy?.acme?.certificate
          return served != null && accept(served.fingerprint)
        },
        timeoutMs,
      )
    ).proxy!.acme!
  const oneTunnel = (status: WarrenStatus) => status.node?.tunnel?.proxies.length === 1

  const proxy = await acmeProxy(pebble, DOMAIN, webPort)
  let issued: X509Certificate

  await t.test('TLS-ALPN-01 on the multiplexed port; browsers get the ACME certificate, cluster clients the cluster one', async (t) => {
    await proxy.start()
    t.teardown(() => proxy.stop())
    const acme = await acmeServed(proxy, 60_000)
    // Without http_listen_addr the proxy offers TLS-ALPN-01 alone: Pebble validated through its own listener.
    t.equal(acme.orders, 1, "ordered from Pebble, validated by TLS-ALPN-01 on the proxy's port")

    issued = await peerCertificate(pebble, webPort, DOMAIN)
    t.equal(acme.certificate!.fingerprint, issued.fingerprint256, 'the status names the certificate served')
    t.equal(issued.subjectAltName, `DNS:${DOMAIN}`, "a client asking for the public name gets a certificate for it, trusted by Pebble's root")
    t.match(await health(pebble, webPort, DOMAIN), /^HTTP\/1\.1 200[\s\S]*"ok":true/, 'and the web API answers over it')
    const clusterCert = await peerCertificate(undefined, webPort, 'cluster.warren.invalid')
    t.match(clusterCert.subject, /test-cluster|proxy/, "the cluster's own name gets the host-CA certificate")
    t.not(clusterCert.fingerprint256, issued.fingerprint256)

    // A node joins through the proxy with the pin, opens its tunnel and serves SSH through it.
    const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=127.0.0.1:${webPort}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=acme-node'])
    t.teardown(() => node.stop())
    await node.waitForStatus('the tunnel', oneTunnel)
    await waitForNode(auth, 'acme-node')
    const profile = await signUser(auth, `127.0.0.1:${webPort}`)
    const ssh = spawnSsh(profile, 'acme-node')
    await ssh.started
    ssh.child.stdin!.end('through\n')
    t.equal(await ssh.done, 'started\ngot:through\n', 'SSH through the ACME-serving proxy')
  })

  await t.test('a restarted proxy serves the certificate kept in the backend, without a new order', async (t) => {
    await proxy.start()
    t.teardown(() => proxy.stop())
    const acme = await acmeServed(proxy, 30_000)
    t.equal(acme.orders, 0, 'loaded from the store: Pebble is not asked again')
    t.equal((await peerCertificate(pebble, webPort, DOMAIN)).fingerprint256, issued.fingerprint256, 'the same certificate')
  })

  await t.test("a stolen proxy's keys cannot plant a web certificate, nor replace the ACME account", async (t) => {
    const stolen = loadIdentity(proxy.dataDir, 'proxy')!
    const asProxy = new ApiClient({ server: auth.address, caPems: stolen.hostCAPems, certPem: stolen.tlsCertPem, keyPem: stolen.tlsKeyPem })
    const record = async (key: string) => (await asProxy.call('POST /v1/proxies/acme/get', { body: { key } })).value

    // The attack: a certificate for the public name, of the attacker's making, until 2999.
    const planted = selfSignedFor(DOMAIN, new Date('2999-01-01T00:00:00Z'))
    await asProxy.call('POST /v1/proxies/acme/put', { body: { key: `acme/cert/${DOMAIN}`, value: JSON.stringify(planted) } })
    t.equal(JSON.parse((await record(`acme/cert/${DOMAIN}`))!).certPem, planted.certPem, 'any proxy may write the certificate record')
    const plantedFingerprint = new X509Certificate(planted.certPem).fingerprint256

    await proxy.start()
    t.teardown(() => proxy.stop())
    const acme = await acmeServed(proxy, 60_000)
    t.not(acme.certificate!.fingerprint, plantedFingerprint, 'the restarted proxy does not serve the planted certificate')
    t.equal(acme.orders, 1, 'it orders one from Pebble instead')
    const served = await peerCertificate(pebble, webPort, DOMAIN)
    t.equal(served.fingerprint256, acme.certificate!.fingerprint, "what clients get verifies against Pebble's root")
    t.not(served.issuer, new X509Certificate(planted.certPem).issuer)
    t.match(proxy.daemon.stderr + proxy.daemon.stdout, /ignoring the stored ACME certificate acme\/cert\/proxy\.warren\.test: its chain does not lead to a trusted root/)
    t.equal(JSON.parse((await record(`acme/cert/${DOMAIN}`))!).certPem.includes(planted.certPem), false, "Pebble's certificate replaces it in the backend")

    const account = await record('acme/account')
    t.ok(account, 'the account the proxies created')
    const attackerKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
    await t.rejects(
      asProxy.call('POST /v1/proxies/acme/put', { body: { key: 'acme/account', value: JSON.stringify({ keyPem: attackerKey }) } }),
      { status: 400, message: /the ACME account exists with another key/ },
      "an account of the attacker's is refused",
    )
    t.equal(await record('acme/account'), account, 'the account is unchanged')
  })

  await t.test('HTTP-01 on the port-80 listener; renewal keeps live tunnels and SSH sessions', async (t) => {
    const renewing = await acmeProxy(shortLived, RENEWING, renewingWebPort, `    http_listen_addr: 127.0.0.1:${renewingHttpPort}`)
    await renewing.start()
    t.teardown(() => renewing.stop())
    await acmeServed(renewing, 60_000)
    const first = await peerCertificate(shortLived, renewingWebPort, RENEWING)
    t.equal(first.subjectAltName, `DNS:${RENEWING}`, 'issued by HTTP-01')
    t.match(await httpGet(renewingHttpPort, '/anything'), /^301 https:\/\/renewing\.warren\.test:\d+\/anything$/, 'port 80 sends other requests to HTTPS')
    t.match(await httpGet(renewingHttpPort, '/.well-known/acme-challenge/unknown'), /^404/, 'and knows no stale challenge')

    const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=127.0.0.1:${renewingWebPort}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=renewal-node'])
    t.teardown(() => node.stop())
    const [tunnel] = (await node.waitForStatus('the tunnel', oneTunnel)).node!.tunnel!.proxies
    const profile = await signUser(auth, `127.0.0.1:${renewingWebPort}`, 'bob')
    const ssh = spawnSsh(profile, 'renewal-node')
    await ssh.started

    await acmeServed(renewing, (SHORT_VALIDITY_SECONDS + 30) * 1000, (fingerprint) => fingerprint !== first.fingerprint256)
    const renewed = await peerCertificate(shortLived, renewingWebPort, RENEWING)
    t.not(renewed.fingerprint256, first.fingerprint256, 'new connections get the renewed certificate')
    t.ok(Date.parse(renewed.validTo) > Date.parse(first.validTo))
    ssh.child.stdin!.end('still here\n')
    t.equal(await ssh.done, 'started\ngot:still here\n', 'the SSH session opened before the renewal lives on')
    t.same((await node.status()).node!.tunnel!.proxies, [tunnel], 'and the tunnel was never re-opened')
  })

  await t.test('a refusal by the ACME server is reported with its reason; the proxy keeps serving the cluster', async (t) => {
    const refusedPort = await freePort()
    const refused = await acmeProxy(pebble, BLOCKED, refusedPort)
    await refused.start()
    t.teardown(() => refused.stop())
    const acme = (await refused.daemon.waitForStatus('the refusal', (status) => Boolean(status.proxy?.acme?.last_error), 30_000)).proxy!.acme!
    t.match(
      acme.last_error,
      new RegExp(`^could not obtain a certificate for ${BLOCKED.replaceAll('.', '\\.')} from https://127\\.0\\.0\\.1:\\d+/dir: placing the order failed: .*forbidden by policy`),
      'the reason, as the ACME server gave it',
    )
    t.equal(acme.certificate, null, 'the cluster certificate is served meanwhile')
    const node = startNode([`--data-dir=${tempDir()}`, `--auth-server=127.0.0.1:${refusedPort}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=refused-node'])
    t.teardown(() => node.stop())
    await node.waitForStatus('the tunnel', oneTunnel)
    t.pass('nodes still join and tunnel through it')
  })

  await t.test('configuration mistakes are refused at start, naming the key', async (t) => {
    const withAcme = async (yaml: string) =>
      new ProxyProcess({
        auth,
        token: await auth.token(['tokens', 'add', '--type=proxy']),
        pin,
        extraYaml: `  acme:\n    enabled: true\n${yaml}`,
      }).start()
    await t.rejects(withAcme('  public_addr: ["127.0.0.1:3080"]\n'), /proxy_service\.acme is enabled, but proxy_service\.public_addr names no DNS name/)
    await t.rejects(withAcme(`    ca_file: /nonexistent/ca.pem\n  public_addr: ["${DOMAIN}:1"]\n`), /proxy_service\.acme\.ca_file: cannot read \/nonexistent\/ca\.pem/)
  })
}

/** An OpenSSH session through the proxy that stays open until its standard input ends. */
function spawnSsh(profile: string, node: string): { child: ReturnType<typeof spawn>; started: Promise<void>; done: Promise<string> } {
  const child = spawn('ssh', ['-F', join(profile, 'ssh_config'), '-o', 'BatchMode=yes', `${testLogin()}@${node}`, 'echo started; read line; echo "got:$line"'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let output = ''
  let errors = ''
  child.stderr!.on('data', (chunk) => (errors += chunk))
  const started = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk) => {
      output += chunk
      if (output.includes('started\n')) resolve()
    })
    child.once('exit', (code) => reject(new Error(`ssh exited (${code}) before starting: ${errors}`)))
  })
  const done = new Promise<string>((resolve) => child.once('exit', () => resolve(output)))
  return { child, started, done }
}

/** A plain HTTP GET: `<status> <location or body>`. */
function httpGet(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (body += chunk))
      res.on('end', () => resolve(`${res.statusCode} ${res.headers.location ?? body}`))
    })
    req.on('error', reject)
    req.end()
  })
}
