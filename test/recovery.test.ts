// Expired devices recover by themselves, with real processes and short lifetimes in the
// config: a node in tunnel mode and a direct node, offline for longer than their
// certificates live, come back without a token by proving their keys; past
// auth_service.recovery_window a node is refused and its log names the warrenctl step that
// re-admits it; a recovery with the right host ID and another key, or for a removed node,
// is refused and charged to the join rate limiter.

import { createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { Authority, newKeySet } from '../auth/authorities.ts'
import { issueHostIdentity } from '../auth/issuer.ts'
import { ApiClient } from '../shared/api-client.ts'
import { validNow } from '../shared/cert-subject.ts'
import { ApiError } from '../shared/errors.ts'
import { loadIdentity, type NodeIdentity, saveIdentity } from '../shared/identity-store.ts'
import { generateJoinKeys, joinCluster } from '../shared/join.ts'
import { pendingJoinKeysPath, savePendingJoinKeys } from '../shared/pending-join-keys.ts'
import { recoveryBody } from '../shared/recover.ts'
import { RETRY_CAP_MS } from '../shared/renewal-schedule.ts'
import { createCertificate } from '../shared/x509.ts'
import { AuthProcess, type Daemon, openssh, ProxyProcess, signUser, startNode, tempDir, testLogin, waitForNode, warren } from './helpers/cluster.ts'
import { until } from './helpers/until.ts'

t.setTimeout(300_000)

const certificateOf = (dataDir: string) => new X509Certificate(readFileSync(join(dataDir, 'identity', 'host.crt'), 'utf8'))

/** The host ID `nodes ls` shows for `nodename`. */
async function listedHostId(auth: AuthProcess, nodename: string): Promise<string> {
  return new RegExp(`^${nodename}\\s+(\\S+)`, 'm').exec(await waitForNode(auth, nodename, 60_000))![1]
}

/** Waits (on the certificate's own dates) until the node's certificate has expired. */
async function expiry(dataDir: string): Promise<void> {
  const expires = certificateOf(dataDir).validToDate.getTime()
  await until('the certificate to expire', () => Date.now() > expires + 1000, { timeoutMs: 60_000 })
}

/** A node config that logs JSON (and serves a direct node's port on a free loopback port). */
function jsonLogConfig(level = 'info'): string {
  const path = join(tempDir(), 'node.yaml')
  writeFileSync(path, `log: { format: json, level: ${level} }\nssh_service:\n  listen_addr: 127.0.0.1:0\n`)
  return `--config=${path}`
}

/** The JSON log entries of a daemon started with jsonLogConfig(). */
function entries(daemon: Daemon): Record<string, unknown>[] {
  return daemon.stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
}

t.test('nodes offline for longer than their certificates live come back without a token', async (t) => {
  const auth = await new AuthProcess({ authServiceYaml: '  host_cert_ttl: 15s' }).start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  t.teardown(() => proxy.stop())
  const tunnelDir = tempDir()
  const directDir = tempDir()
  const tunnelNode = startNode([`--data-dir=${tunnelDir}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=wanderer'])
  const directNode = startNode([`--data-dir=${directDir}`, `--auth-server=${auth.address}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=hermit'])
  const hostIds = { wanderer: await listedHostId(auth, 'wanderer'), hermit: await listedHostId(auth, 'hermit') }
  const firstCerts = { wanderer: certificateOf(tunnelDir), hermit: certificateOf(directDir) }
  await tunnelNode.stop()
  await directNode.stop()
  await expiry(tunnelDir)
  await expiry(directDir)
  t.notOk(validNow(certificateOf(tunnelDir)) || validNow(certificateOf(directDir)), "both nodes' certificates expired while they were stopped")

  // Restarted with their data dirs alone: no token anywhere.
  const tunnelAgain = startNode([jsonLogConfig(), `--data-dir=${tunnelDir}`])
  t.teardown(() => tunnelAgain.stop())
  const directAgain = startNode([jsonLogConfig(), `--data-dir=${directDir}`])
  t.teardown(() => directAgain.stop())
  await until('both nodes to hold valid certificates again', () => validNow(certificateOf(tunnelDir)) && validNow(certificateOf(directDir)), { timeoutMs: 60_000 })
  t.equal(await listedHostId(auth, 'wanderer'), hostIds.wanderer, 'the tunnel node is back under its host ID')
  t.equal(await listedHostId(auth, 'hermit'), hostIds.hermit, 'the direct node too')
  const atStart = entries(tunnelAgain).find((entry) => entry.time_left !== undefined)
  t.equal(atStart?.cert_expires, firstCerts.wanderer.validToDate.toISOString(), "the node logs its certificate's expiry when it starts")
  t.match(atStart?.time_left, /^-\d+s$/, 'and the time left: none')
  for (const [name, dir] of [
    ['wanderer', tunnelDir],
    ['hermit', directDir],
  ] as const) {
    const cert = certificateOf(dir)
    t.ok(validNow(cert), `${name} holds a valid certificate`)
    t.ok(cert.publicKey.equals(firstCerts[name].publicKey), `${name}'s certificate is for the key it joined with`)
  }
  const profile = await signUser(auth, proxy.web)
  for (const name of ['wanderer', 'hermit']) {
    let result = { code: -1, stdout: '', stderr: '' }
    await until(`SSH to ${name}`, async () => (result = await openssh(profile, [`${testLogin()}@${name}`, 'echo back'])).stdout === 'back\n', { timeoutMs: 30_000 })
    t.equal(result.stdout, 'back\n', `a stock OpenSSH client reaches ${name} through the proxy`)
  }
})

t.test('past the recovery window a node is refused, and its log names the step that re-admits it', async (t) => {
  const auth = await new AuthProcess({ authServiceYaml: '  host_cert_ttl: 15s\n  recovery_window: 1s' }).start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  t.teardown(() => proxy.stop())
  const dataDir = tempDir()
  const node = startNode([`--data-dir=${dataDir}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=castaway'])
  const hostId = await listedHostId(auth, 'castaway')
  await node.stop()
  await expiry(dataDir)

  const again = startNode([jsonLogConfig(), `--data-dir=${dataDir}`])
  t.teardown(() => again.stop())
  await again.waitFor('the refusal', () => entries(again).some((entry) => entry.readmit !== undefined), 60_000)
  const refusal = entries(again).find((entry) => entry.readmit !== undefined)!
  t.equal(refusal.level, 'error')
  t.equal(refusal.readmit, 'warrenctl nodes add --nodename=castaway', 'the log names the exact step')
  t.match(refusal.msg, /longer ago than the recovery window \(1 second\): re-admit it with "warrenctl nodes add --nodename=castaway"/)
  t.ok(again.running, 'the node keeps running, to ask again later')
  t.notOk(validNow(certificateOf(dataDir)), 'and got no certificate')

  // The step: a token made for its name, given to the node, which joins again with it.
  const token = await auth.token(['nodes', 'add', '--nodename=castaway'])
  await again.stop()
  const readmitted = startNode([`--data-dir=${dataDir}`, `--token=${token}`])
  t.teardown(() => readmitted.stop())
  await until(
    'the node to be re-admitted under a new host ID',
    async () => {
      const ls = (await auth.ctl(['nodes', 'ls'])).stdout
      const match = /^castaway\s+(\S+)/m.exec(ls)
      return match !== null && match[1] !== hostId
    },
    { timeoutMs: 60_000 },
  ).catch((error) => {
    throw new Error(`${error.message}\n${readmitted.stderr}`)
  })
  t.ok(validNow(certificateOf(dataDir)), 're-admitted with a fresh certificate')
})

t.test('a re-admission whose answer was lost is joined again with its keys, not lost with them', async (t) => {
  const auth = await new AuthProcess({ authServiceYaml: '  host_cert_ttl: 15s\n  recovery_window: 1s' }).start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const dataDir = tempDir()
  const node = startNode([`--data-dir=${dataDir}`, `--auth-server=${auth.address}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=lost-answer'])
  const oldHostId = await listedHostId(auth, 'lost-answer')
  await node.stop()
  await expiry(dataDir)

  // What a power cut leaves after the re-admission's join was registered and before its answer
  // was stored: the old identity, and the keys of the join, which the auth server now holds.
  const token = await auth.token(['nodes', 'add', '--nodename=lost-answer'])
  const keys = generateJoinKeys()
  savePendingJoinKeys(dataDir, 'node', keys)
  const registered = await joinCluster({ authServer: auth.address, token, caPins: [pin], nodename: 'lost-answer', roles: ['node'], warn: () => {}, keys })
  t.not(registered.hostId, oldHostId, 'the auth server registered the join, replacing the old host')

  const restarted = startNode([`--data-dir=${dataDir}`, `--token=${token}`])
  t.teardown(() => restarted.stop())
  await until('the node to hold the host its join registered', () => loadIdentity(dataDir)?.hostId === registered.hostId, { timeoutMs: 60_000 }).catch((error) => {
    throw new Error(`${error.message}\n${restarted.stderr}`)
  })
  t.ok(validNow(certificateOf(dataDir)), 'with a fresh certificate')
  t.equal(await listedHostId(auth, 'lost-answer'), registered.hostId, 'and it is the node listed')
  t.notOk(existsSync(pendingJoinKeysPath(dataDir, 'node')), "the join's keys are gone once its identity is stored")
})

t.test('a recovery with the right host ID and another key, or for a removed node, is refused and counted', async (t) => {
  const auth = await new AuthProcess({ authServiceYaml: '  join_rate_limit: { burst: 4, per_minute: 1 }' }).start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  t.teardown(() => proxy.stop())
  const dataDir = tempDir()
  const node = startNode([`--data-dir=${dataDir}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=victim'])
  t.teardown(() => node.stop())
  const hostId = await listedHostId(auth, 'victim')
  const victim = loadIdentity(dataDir)!

  // An attacker who knows the victim's host ID, name and certificate (all public), through the proxy.
  const client = new ApiClient({ server: proxy.web, caPems: victim.hostCAPems })
  t.teardown(() => client.close())
  const attempt = async (identity: NodeIdentity): Promise<{ status: number; message: string }> => {
    const { nonce } = await client.request<{ nonce: string }>('POST', '/v1/join/challenge', {})
    try {
      await client.request('POST', '/v1/recover', recoveryBody(identity, nonce))
      return { status: 200, message: '' }
    } catch (error) {
      if (error instanceof ApiError) return { status: error.status, message: error.message }
      throw error
    }
  }
  const pem = (key: ReturnType<typeof generateKeyPairSync>['privateKey']) => key.export({ type: 'pkcs8', format: 'pem' }) as string
  const attackerTls = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const attackerSsh = generateKeyPairSync('ed25519')

  // 1. The victim's certificate, signed with the attacker's keys.
  const signedByOthers = await attempt({ ...victim, tlsKeyPem: pem(attackerTls.privateKey), sshKeyPem: pem(attackerSsh.privateKey) })
  t.same(signedByOthers, { status: 403, message: `recovery refused for host ${hostId}: field "tls_signature" is not a signature by the TLS key registered for this host` })
  // 2. A certificate naming the victim (from a CA of the attacker's) for the attacker's key.
  const foreignCA = new Authority({ type: 'host', clusterName: 'test-cluster', keySets: [newKeySet('host', 'test-cluster')] })
  const forged = issueHostIdentity(foreignCA, {
    hostId,
    nodename: 'victim',
    clusterName: 'test-cluster',
    roles: ['node'],
    tlsPublicKey: attackerTls.publicKey,
    sshPublicKey: attackerSsh.publicKey,
  })
  const withForged = await attempt({ ...victim, tlsCertPem: forged.tlsCertPem, tlsKeyPem: pem(attackerTls.privateKey), sshKeyPem: pem(attackerSsh.privateKey) })
  t.same(withForged, { status: 403, message: `recovery refused for host ${hostId}: the certificate's key is not the TLS key registered for host ${hostId}` })
  t.ok(node.running && validNow(certificateOf(dataDir)), 'the victim is untouched')

  // 3. The node removed: even its own keys recover nothing.
  t.equal((await auth.ctl(['nodes', 'rm', 'victim'])).code, 0)
  await node.stop()
  const removed = await attempt(victim)
  t.same(removed, {
    status: 403,
    message: `recovery refused for host ${hostId}: host ${hostId} is not registered in this cluster: it was removed or replaced, and joining again needs a new token`,
  })
  t.equal((await attempt(victim)).status, 403, 'the fourth refusal')
  const limited = await attempt(victim)
  t.equal(limited.status, 429, 'the fifth try from the same address is refused before it is read: every refusal was counted')
  t.match(limited.message, /too many join attempts from 127\.0\.0\.1 \(failed or still under way\); try again in \d+s/)
  t.notMatch((await auth.ctl(['nodes', 'ls'])).stdout, /victim/, 'and the removed node stays removed')
})

t.test('a host that holds its keys gets no new certificates at will by recovering with one of its own making', async (t) => {
  const auth = await new AuthProcess({ authServiceYaml: '  join_rate_limit: { burst: 4, per_minute: 1 }' }).start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const identity = await joinCluster({ authServer: auth.address, caPins: [pin], token: await auth.token(), nodename: 'pi-9', roles: ['node'], warn: () => {} })
  const client = new ApiClient({ server: auth.address, caPems: identity.hostCAPems })
  t.teardown(() => client.close())
  const key = createPrivateKey(identity.tlsKeyPem)
  // Its certificate is good and not due; one of its own making, with a later start each time, would pass for newer.
  const recoverWithMadeUp = async (i: number): Promise<string> => {
    const madeUp = createCertificate({
      subject: { CN: identity.hostId, O: identity.clusterName, OU: ['node'], name: 'pi-9' },
      issuer: { CN: 'pi-9 itself' },
      publicKey: createPublicKey(key),
      signingKey: key,
      notBefore: new Date(Date.now() + 1000 * (i + 1)),
      notAfter: new Date(Date.now() + 86_400_000),
    })
    const { nonce } = await client.request<{ nonce: string }>('POST', '/v1/join/challenge', {})
    try {
      const answer = await client.request<{ tls_cert: string }>('POST', '/v1/recover', recoveryBody({ ...identity, tlsCertPem: madeUp }, nonce))
      return new X509Certificate(answer.tls_cert).serialNumber
    } catch (error) {
      if (error instanceof ApiError) return `refused ${error.status}`
      throw error
    }
  }
  const answers: string[] = []
  for (let i = 0; i < 5; i++) answers.push(await recoverWithMadeUp(i))
  const issued = new Set(answers.filter((answer) => !answer.startsWith('refused')))
  t.equal(issued.size, 1, `one set of certificates, answered again while it is good: ${answers.join(', ')}`)
  t.equal(answers[4], 'refused 429', 'and every recovery counts against the address, a success too')
})

t.test('a node that cannot verify its server backs off its recovery', async (t) => {
  const auth = await new AuthProcess({ authServiceYaml: '  host_cert_ttl: 15s' }).start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  t.teardown(() => proxy.stop())
  const dataDir = tempDir()
  const node = startNode([`--data-dir=${dataDir}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=stranded'])
  await listedHostId(auth, 'stranded')
  await node.stop()
  // It trusts a host CA the cluster never had: its certificate is unusable, and no server of the cluster can be verified (nor bridged to).
  const identity = loadIdentity(dataDir)!
  identity.hostCAPems = new Authority({ type: 'host', clusterName: 'test-cluster', keySets: [newKeySet('host', 'test-cluster')] }).tlsCertPems
  saveIdentity(dataDir, identity)

  const again = startNode([jsonLogConfig('debug'), `--data-dir=${dataDir}`])
  t.teardown(() => again.stop())
  const failures = () => entries(again).filter((entry) => entry.what === "this node's certificates" && entry.retry_in !== undefined)
  await again.waitFor('the first failed recovery', () => failures().length > 0, 30_000)
  const first = Date.now()
  await new Promise((resolve) => setTimeout(resolve, 30_000))
  const failed = failures()
  // Backoff (1 s, doubling, full jitter) makes about 6 tries in 30 s, and more than 10 almost never; a try every 1-2 s, about 20.
  t.ok(failed.length <= 10, `at most 10 tries in ${Math.round((Date.now() - first) / 1000)} s (${failed.length}), not one every second or two`)
  t.same(
    failed.map((entry) => entry.renewal_failures),
    failed.map((_, i) => i + 1),
    'each logged once, counted in a row',
  )
  t.ok(
    failed.every((entry) => typeof entry.retry_in_ms === 'number' && (entry.retry_in_ms as number) <= RETRY_CAP_MS && typeof entry.error === 'string'),
    'with the error and the wait in ms',
  )
  const warnings = failed.filter((entry) => entry.level === 'warn')
  t.ok(warnings.length <= 3, `a WARN when it started and when its error changed, not each time (${warnings.length})`)
  t.ok(again.running, 'the node keeps running, to try again later')
  const renewal = (await again.status()).node?.renewal
  t.ok(renewal && renewal.failures >= failed.length, `its status counts the failures in a row (${renewal?.failures})`)
  t.equal(typeof renewal?.last_error, 'string', 'and names the last error')
  t.ok(renewal && Date.parse(renewal.next_try) > Date.now() - 1000, `and the next try (${renewal?.next_try})`)
  t.match((await warren(['status', `--data-dir=${dataDir}`])).stdout, /^Renewal\s+\d+ failed in a row \(.+\); next try .+ \(in .+\)$/m, 'as warren status shows it')
})
