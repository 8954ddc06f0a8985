// A node that joins the auth server directly (no proxy in between) has no tunnel: it serves
// proxies on ssh_service.listen_addr behind mutual TLS, reports that address in its
// heartbeats, and a proxy dials it there. A stock OpenSSH client and `warren proxy port`
// reach it through the proxy as they reach a tunnel node; a client without a proxy
// certificate of the cluster is refused before any service opens, and connections that
// say nothing are not kept, nor more than a few at a time from one address.

import { readFileSync, writeFileSync } from 'node:fs'
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { type TLSSocket, connect as tlsConnect } from 'node:tls'
import t from 'tap'
import { PROFILE_FILES } from '../cli/profile.ts'
import { ApiClient } from '../shared/api-client.ts'
import type { ApiError } from '../shared/errors.ts'
import { identityDir, loadIdentity } from '../shared/identity-store.ts'
import { AuthProcess, openssh, ProxyProcess, signUser, startNode, tempDir, testLogin, waitForNode, warren } from './helpers/cluster.ts'
import { probe } from './helpers/direct-probe.ts'
import { ATTACKERS, Slowloris } from './helpers/slowloris.ts'
import { until } from './helpers/until.ts'

t.test('a direct node reached through the proxy, and only by proxies', async (t) => {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin }).start()
  t.teardown(() => proxy.stop())

  const echo = await echoServer()
  t.teardown(() => echo.server.close())
  const nodeDir = tempDir()
  const nodeConfig = join(nodeDir, 'warren.yaml')
  writeFileSync(
    nodeConfig,
    ['version: v1', `data_dir: ${nodeDir}`, 'ssh_service:', '  listen_addr: 127.0.0.1:0', `  forward_ports: [{ name: webui, addr: "127.0.0.1:${echo.port}" }]`].join('\n'),
  )
  const node = startNode([`--config=${nodeConfig}`, `--auth-server=${auth.address}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=direct-1'])
  t.teardown(() => node.stop())

  const listing = await waitForNode(auth, 'direct-1')
  const row = /^direct-1\s+(\S+)\s+127\.0\.0\.1:(\d+)\s*$/m.exec(listing)
  t.ok(row, `nodes ls shows the address the node serves on, not "⟵ Tunnel":\n${listing}`)
  const hostId = row![1]
  const port = Number(row![2])

  const profile = await signUser(auth, proxy.web)
  const result = await openssh(profile, [`${testLogin()}@direct-1`, 'echo "hello from $(hostname)"; echo oops >&2; exit 3'])
  t.equal(result.code, 3, `the exit status comes back (${result.stderr.trim()})`)
  t.match(result.stdout, /^hello from /)
  t.match(result.stderr, /oops/)

  const declared = await warren(['proxy', 'port', `--identity=${profile}`, 'direct-1', 'webui'], { input: 'hello webui' })
  t.equal(declared.stdout, 'hello webui', `a declared port answers through the proxy, after the request's half close (${declared.stderr.trim()})`)
  const byHostId = await warren(['proxy', 'port', `--identity=${profile}`, hostId, 'webui'], { input: 'by host ID' })
  t.equal(byHostId.stdout, 'by host ID', `the node is found by its host ID too (${byHostId.stderr.trim()})`)

  t.test('only a proxy certificate of the cluster opens a service', async (t) => {
    const proxyIdentity = identityDir(proxy.dataDir, 'proxy')
    const nodeIdentity = identityDir(nodeDir)
    const accepted = await probe('127.0.0.1', port, { certFile: join(proxyIdentity, 'host.crt'), keyFile: join(proxyIdentity, 'host.key') })
    t.equal(accepted.node, hostId, 'the node presents its host certificate')
    t.match(accepted.reply, /^\{"ok":true\}\nSSH-2\.0-/, 'a proxy certificate opens the SSH service')

    const refusals: [string, { certFile: string; keyFile: string } | undefined][] = [
      ['no certificate', undefined],
      ["a node's certificate", { certFile: join(nodeIdentity, 'host.crt'), keyFile: join(nodeIdentity, 'host.key') }],
      ["a user's certificate", { certFile: join(profile, PROFILE_FILES.tlsCert), keyFile: join(profile, PROFILE_FILES.tlsKey) }],
    ]
    for (const [what, credentials] of refusals) {
      const refused = await probe('127.0.0.1', port, credentials)
      t.equal(refused.reply, '', `${what}: refused before any service opens, not a byte back`)
      t.equal(refused.error, undefined, `${what}: the node closed the connection`)
    }
    t.ok(node.running, 'the node carries on')
  })

  t.test("a proxy's keys cannot report the direct node as behind a tunnel, nor relabel it", async (t) => {
    const stolen = loadIdentity(proxy.dataDir, 'proxy')!
    const asProxy = new ApiClient({ server: auth.address, caPems: stolen.hostCAPems, certPem: stolen.tlsCertPem, keyPem: stolen.tlsKeyPem })
    t.teardown(() => asProxy.close())
    // Reported every 200 ms for 3 s, more often than the node's own heartbeats.
    for (let report = 0; report < 15; report++) {
      await asProxy.call('POST /v1/presence', { body: { nodes: [{ host_id: hostId, addr: '', labels: { env: 'dev' } }] } })
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    const listed = JSON.parse((await auth.ctl(['nodes', 'ls', '--format=json'])).stdout) as { nodename: string; addr: string; labels: Record<string, string> }[]
    t.match(
      listed.find((entry) => entry.nodename === 'direct-1'),
      { addr: `127.0.0.1:${port}`, labels: {} },
      'still listed at the address it serves on, with its own labels',
    )
    t.notOk(listed.find((entry) => entry.nodename === 'direct-1')?.labels.env, 'no label the proxy made up')
    const reached = await openssh(profile, [`${testLogin()}@direct-1`, 'echo reached'])
    t.equal(reached.stdout, 'reached\n', `the proxy still dials it (${reached.stderr.trim()})`)
  })

  t.test('connections that stay silent are closed by the node', async (t) => {
    const proxyIdentity = identityDir(proxy.dataDir, 'proxy')
    const [beforeHandshake, beforeRequest] = await Promise.all([
      closedByPeer(netConnect({ host: '127.0.0.1', port })),
      closedByPeer(
        tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, cert: readFileSync(join(proxyIdentity, 'host.crt')), key: readFileSync(join(proxyIdentity, 'host.key')) }),
      ),
    ])
    t.ok(beforeHandshake, 'a TCP connection that never starts its TLS handshake')
    t.ok(beforeRequest, "a proxy's connection that never names a service")
  })

  t.test('a slowloris at the node keeps no proxy out and holds only so many connections', async (t) => {
    // 900 connections at once from 8 addresses, then 40 a second, each sending the first
    // bytes of a TLS record and then nothing.
    const attack = new Slowloris([`127.0.0.1:${port}`], ATTACKERS, 3000)
    t.teardown(() => attack.destroy())
    attack.burst(900)
    attack.start(40)
    await until('the attack to be connected', async () => attack.counts.connected >= 900, { timeoutMs: 20_000 })
    // A burst is let in whole (its connections are young); the next arrivals push out the oldest.
    const limit = ATTACKERS.length * 32
    const during = (
      await node.waitForStatus('the node to keep at most 32 waiting per address', (status) => {
        const waiting = status.node?.direct?.handshake_gate.pending_hello ?? 0
        return waiting > 0 && waiting <= limit
      })
    ).node!.direct!.handshake_gate
    t.ok(during.pending_hello <= limit, `the node keeps at most 32 waiting per address while the attack goes on (${during.pending_hello} waiting)`)
    t.equal(during.handshaking, 0, 'and none of them in a handshake')
    for (let i = 0; i < 3; i++) {
      const result = await openssh(profile, [`${testLogin()}@direct-1`, 'echo reached'])
      t.equal(result.stdout, 'reached\n', `the proxy reaches the node during the attack (${result.stderr.trim()})`)
    }
    attack.stop()
    t.ok(await attack.allClosed(15_000), `every attacking connection was closed by the node (${JSON.stringify(attack.counts)})`)
    const after = (await node.waitForStatus("the node's counts to settle", (status) => status.node?.direct?.handshake_gate.pending_hello === 0)).node!.direct!.handshake_gate
    t.ok(after.late_hello_closed > 0, `the node closed connections whose ClientHello was late (${after.late_hello_closed})`)
    t.ok(after.hello_per_address_closed > 0, `and, per source address, the oldest of too many waiting (${after.hello_per_address_closed})`)
  })

  t.test('a proxy removed with nodes rm is refused by the node, though its certificate is in date', async (t) => {
    const second = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, nodename: 'edge-2' }).start()
    t.teardown(() => second.stop())
    const stolen = identityDir(second.dataDir, 'proxy')
    const credentials = { certFile: join(stolen, 'host.crt'), keyFile: join(stolen, 'host.key') }
    t.match((await probe('127.0.0.1', port, credentials)).reply, /^\{"ok":true\}\nSSH-2\.0-/, 'the control: its certificate opens the SSH service')
    t.equal((await auth.ctl(['nodes', 'rm', 'edge-2'])).code, 0)
    await second.stop()
    // The node hears of the removal with its next heartbeat's answer.
    await until('the node to refuse the removed proxy', async () => (await probe('127.0.0.1', port, credentials)).reply === '', { timeoutMs: 30_000 })
    const refused = await probe('127.0.0.1', port, credentials)
    t.equal(refused.reply, '', "the removed proxy's keys open nothing")
    const reached = await openssh(profile, [`${testLogin()}@direct-1`, 'echo reached'])
    t.equal(reached.stdout, 'reached\n', `the cluster's proxy still reaches the node (${reached.stderr.trim()})`)
  })

  t.test("a stolen node's keys cannot have its presence written at will: heartbeats beyond a node's pace are refused", async (t) => {
    const identity = loadIdentity(nodeDir)!
    const stolen = new ApiClient({ server: auth.address, caPems: identity.hostCAPems, certPem: identity.tlsCertPem, keyPem: identity.tlsKeyPem })
    t.teardown(() => stolen.close())
    const answers: (number | string)[] = []
    // New labels at every beat, so that each one it takes is a write.
    for (let i = 0; i < 120; i++) {
      answers.push(
        await stolen.call('POST /v1/heartbeat', { body: { labels: { beat: String(i) }, service_addr: `:${port}` } }).then(
          () => 200,
          (error: ApiError) => error.status ?? error.message,
        ),
      )
    }
    const taken = answers.filter((answer) => answer === 200).length
    t.ok(taken >= 50 && taken < 120, `a burst is taken, then no more than the pace (${taken} of 120)`)
    t.same(new Set(answers.filter((answer) => answer !== 200)), new Set([429]), 'the rest are told to wait')
    const reached = await openssh(profile, [`${testLogin()}@direct-1`, 'echo reached'])
    t.equal(reached.stdout, 'reached\n', `the node is reached as before (${reached.stderr.trim()})`)
  })

  t.test("a node that reports another server's address makes the proxy dial it, and the user learns nothing of what answered", async (t) => {
    // What a stolen device would do: report the auth server's port as where it serves.
    const decoyDir = tempDir()
    const decoyConfig = join(decoyDir, 'warren.yaml')
    writeFileSync(decoyConfig, ['version: v1', `data_dir: ${decoyDir}`, 'ssh_service:', '  listen_addr: 127.0.0.1:0', `  public_addr: ${auth.address}`].join('\n'))
    const decoy = startNode([`--config=${decoyConfig}`, `--auth-server=${auth.address}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=decoy'])
    t.teardown(() => decoy.stop())
    t.match(await waitForNode(auth, 'decoy'), new RegExp(`^decoy\\s+\\S+\\s+${auth.address.replace(/\./g, '\\.')}\\s*$`, 'm'), 'listed at the address it reports')
    const result = await openssh(profile, [`${testLogin()}@decoy`, 'true'])
    t.not(result.code, 0)
    t.match(result.stderr, /node "decoy" cannot be reached at the address it reports \(the proxy's log says why\)/)
    t.notMatch(result.stderr, /certificate|127\.0\.0\.1/, 'nothing of the server that answered, nor where it is')
  })

  t.test("a proxy locked while its connections are open: the node closes them, and keeps the other proxy's", async (t) => {
    const third = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, nodename: 'edge-3' }).start()
    t.teardown(() => third.stop())
    const thirdIdentity = identityDir(third.dataDir, 'proxy')
    const clusterIdentity = identityDir(proxy.dataDir, 'proxy')
    const locked = await openService(port, { certFile: join(thirdIdentity, 'host.crt'), keyFile: join(thirdIdentity, 'host.key') })
    const kept = await openService(port, { certFile: join(clusterIdentity, 'host.crt'), keyFile: join(clusterIdentity, 'host.key') })
    t.teardown(() => {
      locked.destroy()
      kept.destroy()
    })
    const lockedClosed = closedByPeer(locked)
    // The keys stay with whoever holds the connection: nothing but the node can end it.
    const lock = await auth.ctl(['lock', `--node=${loadIdentity(third.dataDir, 'proxy')!.hostId}`, '--message=taken out of service'])
    t.equal(lock.code, 0, lock.stderr)
    t.ok(await lockedClosed, "the node closed the locked proxy's open connection once its heartbeat's answer named the proxy")
    t.equal(kept.destroyed, false, "the cluster's other proxy keeps its open connection")
    kept.write('SSH-2.0-still-here\r\n')
    t.equal(kept.destroyed, false)
  })
})

t.test('a listen address that is taken stops the node with the key that names it', async (t) => {
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const taken = createServer()
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r))
  t.teardown(() => taken.close())
  const address = `127.0.0.1:${(taken.address() as { port: number }).port}`
  const nodeDir = tempDir()
  writeFileSync(join(nodeDir, 'warren.yaml'), `version: v1\ndata_dir: ${nodeDir}\nssh_service:\n  listen_addr: ${address}\n`)
  const node = startNode([
    `--config=${join(nodeDir, 'warren.yaml')}`,
    `--auth-server=${auth.address}`,
    `--token=${await auth.token()}`,
    `--ca-pin=${await auth.pin()}`,
    '--nodename=no-port',
  ])
  t.equal(await node.exited, 1)
  t.match(node.stderr, `ERROR: cannot listen on ssh_service.listen_addr ${address}: the address is in use`)
})

/** A connection with a proxy's keys that has opened the SSH service (its banner came), left open. */
function openService(port: number, credentials: { certFile: string; keyFile: string }): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, cert: readFileSync(credentials.certFile), key: readFileSync(credentials.keyFile) })
    let reply = ''
    socket.once('secureConnect', () => socket.write(`${JSON.stringify({ service: 'ssh', client: 'test' })}\n`))
    const read = (chunk: Buffer) => {
      reply += chunk.toString('latin1')
      if (!reply.includes('SSH-2.0-')) return
      socket.off('data', read)
      resolve(socket)
    }
    socket.on('data', read)
    socket.once('error', reject)
    socket.once('close', () => reject(new Error(`closed before the service opened: ${JSON.stringify(reply)}`)))
  })
}

/** True once the node closes `socket`; false if it is still open after 30 s. */
function closedByPeer(socket: Socket): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      socket.destroy()
      resolve(false)
    }, 30_000)
    socket.on('error', () => {})
    socket.on('close', () => {
      clearTimeout(timer)
      resolve(true)
    })
    socket.resume()
  })
}

/**
 * Answers each request once it has ended (a half close): what it got back. The answer must
 * still travel back through the proxy after the user's side is closed for writing.
 */
async function echoServer(): Promise<{ server: Server; port: number }> {
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    const chunks: Buffer[] = []
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('end', () => socket.end(Buffer.concat(chunks)))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { server, port: (server.address() as { port: number }).port }
}
