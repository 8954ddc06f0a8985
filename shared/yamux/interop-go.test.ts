// Interoperability with the reference implementation, hashicorp/yamux in Go (Debian:
// golang-go, golang-github-hashicorp-yamux-dev). The peer program in test/fixtures/yamux-go-peer is
// built into a temporary directory; without a Go toolchain the test is skipped.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import t, { type Test } from 'tap'
import { receiveHash, sendRandom, waitFor } from '../../test/helpers/yamux.ts'
import { createSession, type Session } from './session.ts'
import type { Stream } from './stream.ts'

const MB = 1024 * 1024
const GOPATH = '/usr/share/gocode'
const peerSource = new URL('../../test/fixtures/yamux-go-peer', import.meta.url).pathname

function goMissing(): string | null {
  const version = spawnSync('go', ['version'], { encoding: 'utf8' })
  if (version.error) return 'Go is not installed (apt-get install golang-go golang-github-hashicorp-yamux-dev)'
  const lib = spawnSync('go', ['list', 'github.com/hashicorp/yamux'], {
    encoding: 'utf8',
    env: { ...process.env, GOPATH, GO111MODULE: 'off' },
  })
  if (lib.status !== 0) return 'hashicorp/yamux is not installed (apt-get install golang-github-hashicorp-yamux-dev)'
  return null
}

const missing = goMissing()
if (missing !== null) {
  t.test('interoperability with hashicorp/yamux', { skip: missing }, () => {})
} else {
  const dir = mkdtempSync(join(tmpdir(), 'warren-go-peer-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const binary = join(dir, 'go-peer')
  const build = spawnSync('go', ['build', '-o', binary, '.'], {
    cwd: peerSource,
    encoding: 'utf8',
    env: { ...process.env, GOPATH, GO111MODULE: 'off', GOFLAGS: '' },
  })
  if (build.status !== 0) throw new Error(`go build failed: ${build.stderr}`)

  /** Starts the Go peer; resolves its process and a reader of its output lines. */
  function startPeer(args: string[]): { child: ChildProcess; lines: AsyncIterator<string>; exited: Promise<number | null> } {
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'inherit'] })
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]()
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    return { child, lines, exited }
  }

  async function nextLine(lines: AsyncIterator<string>): Promise<string> {
    const { value, done } = await lines.next()
    if (done) throw new Error('go-peer ended its output early')
    return value
  }

  /**
   * Runs both directions over one session: Warren opens `streams` streams and checks the
   * Go side's echo, while the Go side opens as many and checks Warren's echo.
   */
  async function exercise(t: Test, session: Session, peer: ReturnType<typeof startPeer>, streams: number, size: number): Promise<void> {
    session.on('stream', (s: Stream) => {
      s.on('error', (err) => t.fail(`stream ${s.id} from Go: ${err}`))
      s.pipe(s) // echo what Go sends, FIN after its FIN
    })
    const ours = Array.from({ length: streams }, async (_, i) => {
      const stream = session.open()
      const [sent, got] = await Promise.all([sendRandom(stream, size, 96 * 1024, 500 + i), receiveHash(stream)])
      if (got.bytes !== size) return `stream ${stream.id}: ${got.bytes} of ${size} bytes echoed`
      if (got.digest !== sent) return `stream ${stream.id}: echo differs`
      return null
    })
    const problems = (await Promise.all(ours)).filter((p) => p !== null)
    t.same(problems, [], `Go echoed our ${streams} streams of ${size} bytes byte-exact`)
    const report: string[] = []
    for (;;) {
      const line = await nextLine(peer.lines)
      report.push(line)
      if (line.startsWith('DONE')) break
    }
    t.same(
      report.filter((l) => !/^STREAM \d+ OK /.test(l)),
      ['DONE ok'],
      `Go checked its ${streams} streams of ${size} bytes`,
    )
    t.equal(report.filter((l) => / OK /.test(l)).length, streams)
    const rtt = await session.ping()
    t.ok(rtt >= 0, `Go answers pings (${rtt.toFixed(2)} ms)`)
    await waitFor(() => session.numStreams === 0, 3000, 'streams to be removed')
    t.pass('every stream was removed after both FINs')
    session.close()
    t.equal(await peer.exited, 0, 'go-peer exits cleanly when the session closes')
  }

  t.test('Warren client, Go server: 3 streams each way, 20 MiB each', async (t) => {
    const peer = startPeer(['-mode', 'server', '-addr', '127.0.0.1:0', '-open', '3', '-size', String(20 * MB)])
    t.teardown(() => peer.child.kill())
    const listen = await nextLine(peer.lines)
    const port = Number(/^LISTEN (\d+)$/.exec(listen)?.[1])
    t.ok(port > 0, listen)
    const sock = net.connect(port, '127.0.0.1')
    await new Promise((resolve) => sock.once('connect', resolve))
    await exercise(t, createSession(sock, { client: true }), peer, 3, 20 * MB)
  })

  t.test('Go client, Warren server: 3 streams each way, 20 MiB each', async (t) => {
    const server = net.createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as net.AddressInfo).port
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve))
    const peer = startPeer(['-mode', 'client', '-addr', `127.0.0.1:${port}`, '-open', '3', '-size', String(20 * MB)])
    t.teardown(() => peer.child.kill())
    const sock = await accepted
    server.close()
    await exercise(t, createSession(sock, { client: false }), peer, 3, 20 * MB)
  })

  t.test('many short streams from Go and from Warren (ids, FIN/ACK bookkeeping)', async (t) => {
    const peer = startPeer(['-mode', 'server', '-addr', '127.0.0.1:0', '-open', '200', '-size', '3000'])
    t.teardown(() => peer.child.kill())
    const port = Number(/^LISTEN (\d+)$/.exec(await nextLine(peer.lines))?.[1])
    const sock = net.connect(port, '127.0.0.1')
    await new Promise((resolve) => sock.once('connect', resolve))
    const session = createSession(sock, { client: true })
    await exercise(t, session, peer, 200, 3000)
  })
}
