// A node that joins through a proxy's web port and serves SSH through its reverse tunnel,
// reached by a stock OpenSSH client and by `warren ssh` — with separate web and tunnel
// ports (the tunnel port then serves tunnels alone), and with both on one multiplexed port.

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { createServer, connect as netConnect, type Server } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { connect as tlsConnect } from 'node:tls'
import t from 'tap'
import { AuthProcess, freePort, openssh, ProxyProcess, ROOT, signUser, startNode, tempDir, testLogin, waitForNode, warren } from './helpers/cluster.ts'

for (const layout of ['separate ports', 'one multiplexed port'] as const) {
  t.test(`ssh through the tunnel (${layout})`, async (t) => {
    const auth = await new AuthProcess().start()
    t.teardown(() => auth.stop())
    const pin = await auth.pin()
    const proxyToken = await auth.token(['tokens', 'add', '--type=proxy'])
    const single = layout === 'one multiplexed port'
    const SHARED = `127.0.0.1:${await freePort()}`
    const proxy = await new ProxyProcess({ auth, token: proxyToken, pin, ...(single ? { webListenAddr: SHARED, tunnelListenAddr: SHARED } : {}) }).start()
    t.teardown(() => proxy.stop())
    t.equal((await proxy.daemon.status()).proxy!.listen.multiplexed, single, 'the status says whether one port serves both')
    // The design prescribes this debug line's wording, as Teleport's users know it.
    if (single) t.match(proxy.daemon.stderr, /Setup Proxy: Reverse tunnel proxy and web proxy listen on the same port, multiplexing is on/)
    else t.not(proxy.web, proxy.tunnel)

    const echo = await echoServer()
    t.teardown(() => echo.server.close())
    const nodeDir = tempDir()
    writeFileSync(join(nodeDir, 'warren.yaml'), `version: v1\ndata_dir: ${nodeDir}\nssh_service:\n  forward_ports: [{ name: webui, addr: "127.0.0.1:${echo.port}" }]\n`)
    const node = startNode([
      `--config=${join(nodeDir, 'warren.yaml')}`,
      `--auth-server=${proxy.web}`,
      `--token=${await auth.token()}`,
      `--ca-pin=${pin}`,
      '--nodename=tunneled',
      '--labels=env=test',
    ])
    t.teardown(() => node.stop())
    const listing = await waitForNode(auth, 'tunneled')
    t.match(listing, /^tunneled\s+\S+\s+⟵ Tunnel\s+env=test$/m, 'the node is present through its tunnel')

    // The web API answers on the web port; a tunnel port of its own serves tunnels alone,
    // with or without ALPN http/1.1 in the request.
    for (const alpn of [['http/1.1'], undefined]) {
      const web = await httpsGet(proxy.web, '/v1/discovery', alpn)
      t.equal(web.status, 200, `the web port serves discovery (ALPN ${alpn ?? 'none'})`)
      const tunnelPort = await httpsGet(proxy.tunnel, '/v1/discovery', alpn)
      if (single) t.equal(tunnelPort.status, 200, 'one multiplexed port serves both')
      else t.same({ status: tunnelPort.status, text: tunnelPort.text }, { status: undefined, text: '' }, `the tunnel port refuses HTTPS (ALPN ${alpn ?? 'none'})`)
    }
    if (!single) t.equal((await httpsGet(proxy.tunnel, '/v1/join', ['http/1.1'], 'POST')).status, undefined, 'nor does it take joins')

    const profile = await signUser(auth, proxy.web)
    const result = await openssh(profile, [`${testLogin()}@tunneled`, 'echo "hello from $(hostname)"; echo oops >&2; exit 3'])
    t.equal(result.code, 3, 'the exit status comes back')
    t.match(result.stdout, /^hello from /)
    t.match(result.stderr, /oops/)

    const viaWarren = await warren(['ssh', `--identity=${profile}`, `${testLogin()}@tunneled`, 'echo', 'via-warren'])
    t.equal(viaWarren.code, 0, viaWarren.stderr)
    t.equal(viaWarren.stdout, 'via-warren\n')

    // Like ssh, `warren ssh` ends when the remote command does, whatever its standard input
    // (a pipe that never closes here, as from `sleep 30 | warren ssh ...`).
    const pending = spawn(process.execPath, [join(ROOT, 'cli/warren.ts'), 'ssh', `--identity=${profile}`, `${testLogin()}@tunneled`, 'exit 7'], {
      stdio: ['pipe', 'ignore', 'ignore'],
    })
    t.teardown(() => pending.kill('SIGKILL'))
    const ended = await Promise.race([once(pending, 'exit').then(([code]) => code), sleep(20_000, undefined, { ref: false }).then(() => 'still running')])
    t.equal(ended, 7, 'it exits with the remote status while its standard input is open')
    pending.stdin!.end()

    const unknown = await openssh(profile, [`${testLogin()}@nowhere`, 'true'])
    t.not(unknown.code, 0)
    t.match(unknown.stderr, /cannot reach node "nowhere"/)

    // A port the node declares is reachable by name; nothing else is.
    const declared = await warren(['proxy', 'port', `--identity=${profile}`, 'tunneled', 'webui'], { input: 'hello webui' })
    t.equal(declared.stdout, 'hello webui', `a declared port echoes (${declared.stderr.trim()})`)
    const undeclared = await warren(['proxy', 'port', `--identity=${profile}`, 'tunneled', 'secret'], { input: 'x' })
    t.not(undeclared.code, 0)
    t.match(undeclared.stderr, /no service "secret" on this node/)

    // ssh -L through the tunnel.
    const localPort = await freePort()
    const forward = spawn(
      'ssh',
      ['-F', join(profile, 'ssh_config'), '-N', '-o', 'ExitOnForwardFailure=yes', '-L', `${localPort}:127.0.0.1:${echo.port}`, `${testLogin()}@tunneled`],
      { stdio: 'ignore' },
    )
    t.teardown(() => forward.kill('SIGKILL'))
    t.equal(await echoThrough(localPort, 'through -L'), 'through -L', 'ssh -L forwards through the tunnel')

    // The proxy checks the user before it opens any stream: no user certificate, no stream.
    const anonymous = await new Promise<string>((resolve) => {
      const [host, port] = [proxy.web.slice(0, proxy.web.lastIndexOf(':')), Number(proxy.web.slice(proxy.web.lastIndexOf(':') + 1))]
      const socket = tlsConnect({ host, port, ALPNProtocols: ['warren-ssh'], rejectUnauthorized: false }, () =>
        socket.write(JSON.stringify({ node: 'tunneled', service: 'ssh' }) + '\n'),
      )
      let text = ''
      socket.on('data', (d) => (text += d))
      socket.on('close', () => resolve(text))
      socket.on('error', () => resolve(text))
    })
    t.match(anonymous, /"ok":false.*user certificate/, 'a connection without a user certificate is refused')
    t.notMatch(anonymous, /SSH-2\.0/, 'no byte from the node reached it')
  })
}

/** An HTTPS request over a raw TLS connection: the status code, all that came back, and any error. */
async function httpsGet(address: string, path: string, alpn: string[] | undefined, method = 'GET'): Promise<{ status?: number; text: string; error?: string }> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))]
  return new Promise((resolve) => {
    let text = ''
    let error: string | undefined
    const socket = tlsConnect({ host, port, rejectUnauthorized: false, servername: 'cluster.warren.invalid', ...(alpn ? { ALPNProtocols: alpn } : {}) }, () => {
      socket.write(`${method} ${path} HTTP/1.1\r\nHost: ${address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`)
    })
    socket.setTimeout(10_000, () => socket.destroy(new Error('no answer')))
    socket.on('data', (d) => (text += d))
    socket.on('error', (e) => (error = e.message))
    socket.on('close', () => {
      const status = /^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]
      resolve({ status: status === undefined ? undefined : Number(status), text, error })
    })
  })
}

async function echoServer(): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => socket.pipe(socket))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { server, port: (server.address() as { port: number }).port }
}

/** Sends `text` to 127.0.0.1:port (retrying until the listener is up) and returns the echo. */
async function echoThrough(port: number, text: string): Promise<string> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const reply = await new Promise<string | undefined>((resolve) => {
      const socket = netConnect({ host: '127.0.0.1', port }, () => socket.write(text))
      let got = ''
      socket.on('data', (d) => {
        got += d
        if (got.length >= text.length) {
          socket.destroy()
          resolve(got)
        }
      })
      socket.on('error', () => resolve(undefined))
      socket.on('close', () => resolve(got || undefined))
    })
    if (reply) return reply
    await sleep(100)
  }
  return ''
}
