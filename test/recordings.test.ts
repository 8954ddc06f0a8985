// Session recordings with real processes: stock `ssh -tt` through a proxy to a tunnelled
// node, the recording exported with `warrenctl recordings get` and played by Debian's
// asciinema; a window size change is a resize event; a command run without a pty is not
// recorded; `warren play` replays it for an editor and for nobody else; another node's
// certificate cannot add to the recording; a session cut by killing the proxy is uploaded
// whole once the proxy is back; a direct node (no tunnel) uploads its own; and an auth
// server with recording off keeps nothing.

import { execFile, execFileSync, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync, readlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { NODE_EVENT_BURST } from '../auth/audit.ts'
import { RESET_TERMINAL } from '../cli/play.ts'
import { TerminalFilter } from '../cli/terminal-filter.ts'
import { ApiClient } from '../shared/api-client.ts'
import { ApiError } from '../shared/errors.ts'
import { loadIdentity } from '../shared/identity-store.ts'
import { joinCluster } from '../shared/join.ts'
import type { AuditEvent } from '../shared/protocol/audit.ts'
import { MAX_RECORDING_BYTES, type RecordingJson } from '../shared/protocol/recordings.ts'
import { AuthProcess, freePort, openssh, ProxyProcess, signUser, startNode, tempDir, testLogin, waitForNode, warren } from './helpers/cluster.ts'
import { signUp } from './helpers/people.ts'

t.setTimeout(120_000)

const auth = await new AuthProcess().start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
// Fixed ports: the proxy is killed and started again where the node knows it.
const proxy = await new ProxyProcess({
  auth,
  token: await auth.token(['tokens', 'add', '--type=proxy']),
  pin,
  webListenAddr: `127.0.0.1:${await freePort()}`,
  tunnelListenAddr: `127.0.0.1:${await freePort()}`,
}).start()
t.teardown(() => proxy.stop())
const login = testLogin()
const nodeDir = tempDir()
const node = startNode([`--data-dir=${nodeDir}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=pi-rec'])
t.teardown(() => node.stop())
await waitForNode(auth, 'pi-rec')
const profile = await signUser(auth, proxy.web, 'carol')

async function recordingsLs(): Promise<RecordingJson[]> {
  const listed = await auth.ctl(['recordings', 'ls', '--format=json'])
  if (listed.code !== 0) throw new Error(listed.stderr)
  return JSON.parse(listed.stdout) as RecordingJson[]
}

/** Waits until `count` recordings are whole on the auth server. */
async function completeRecordings(count: number, timeoutMs = 45_000): Promise<RecordingJson[]> {
  const deadline = Date.now() + timeoutMs
  let listed = await recordingsLs()
  while (listed.filter((r) => r.complete).length < count && Date.now() < deadline) {
    await sleep(250)
    listed = await recordingsLs()
  }
  return listed
}

/** `warrenctl recordings get ID` into a file: its path and text. */
async function exported(id: string): Promise<{ path: string; text: string }> {
  const got = await auth.ctl(['recordings', 'get', id])
  if (got.code !== 0) throw new Error(got.stderr)
  const path = join(tempDir('warren-cast-'), `${id}.cast`)
  writeFileSync(path, got.stdout)
  return { path, text: got.stdout }
}

/** `asciinema cat FILE`: the session's output as the recording replays it (asciinema opens /dev/tty: `script` gives it one). */
function asciinemaCat(path: string): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile('script', ['-q', '-e', '-c', `asciinema cat '${path}'`, '/dev/null'], { timeout: 20_000 }, (error, stdout, stderr) =>
      error ? reject(new Error(`asciinema cat: ${stderr}`)) : resolve(stdout),
    ),
  )
}

/** Checks the asciicast v2 shape: a header, then [time, "o"|"r", text] events in time order. */
function parseCast(t: Test, text: string): { header: Record<string, unknown>; events: [number, string, string][] } {
  const [first, ...rest] = text.split('\n').filter((line) => line.length > 0)
  const header = JSON.parse(first) as Record<string, unknown>
  t.match(header, { version: 2, width: Number, height: Number, timestamp: Number }, 'an asciicast v2 header')
  const events = rest.map((line) => JSON.parse(line) as [number, string, string])
  t.ok(
    events.every(([time, kind, data], i) => typeof time === 'number' && ['o', 'r'].includes(kind) && typeof data === 'string' && (i === 0 || time >= events[i - 1][0])),
    'output and resize events in time order',
  )
  t.notOk(
    events.some(([, kind]) => kind === 'i'),
    'no input events',
  )
  return { header, events }
}

/** An interactive `ssh -tt` session: `lines` typed one by one; resolves with its output once ssh exits. */
function interactive(
  lines: string[],
  onOutput?: (output: string) => void,
  nodeName = 'pi-rec',
): { done: Promise<{ code: number | null; output: string }>; type: (line: string) => void } {
  const ssh = spawn('ssh', ['-tt', '-F', join(profile, 'ssh_config'), '-o', 'BatchMode=yes', `${login}@${nodeName}`], { stdio: ['pipe', 'pipe', 'pipe'] })
  let output = ''
  ssh.stdout.on('data', (data) => {
    output += data
    onOutput?.(output)
  })
  ssh.stdin.on('error', () => {})
  for (const line of lines) ssh.stdin.write(`${line}\n`)
  const done = once(ssh, 'exit').then(([code]) => ({ code: code as number | null, output }))
  return { done, type: (line) => ssh.stdin.write(`${line}\n`) }
}

let firstId = ''
let firstCast = ''

/**
 * What a session can print to act on the terminal of whoever replays it: a clipboard write,
 * a title, and queries whose answers the terminal would type (window title, cursor position,
 * DECRQSS, device attributes); a colour between the texts, which replay keeps.
 */
const HOSTILE_PRINTF = String.raw`printf 'text-before\033]52;c;ZXZpbA==\007\033]0;owned-title\007\033[21t\033[6n\033P$qm\033\\\033[c\033[31mred\033[0m-text-after\n'`
const HOSTILE_SEQUENCES = ['\x1b]52;c;ZXZpbA==\x07', '\x1b]0;owned-title\x07', '\x1b[21t', '\x1b[6n', '\x1bP$qm\x1b\\', '\x1b[c']

t.test('an interactive session is recorded, exported and played by asciinema; a command without a pty is not', async (t) => {
  const plain = await openssh(profile, [`${login}@pi-rec`, 'echo not-recorded'])
  t.equal(plain.stdout, 'not-recorded\n')
  const session = interactive(['echo hello-$((6*7))', HOSTILE_PRINTF, 'exit'])
  const { code, output } = await session.done
  t.equal(code, 0, output)
  t.match(output, /hello-42/)

  const listed = await completeRecordings(1)
  t.equal(listed.length, 1, 'one recording: the exec session has none')
  t.match(listed[0], { user: 'carol', login, node: 'pi-rec', complete: true, size: Number })
  firstId = listed[0].session_id
  const sessions = await auth.api<{ events: { session_id: string }[] }>('GET', '/v1/audit/events?type=session.start&user=carol')
  t.ok(
    sessions.events.some((e) => e.session_id === firstId),
    'named by the session ID of its audit events',
  )

  const { path, text } = await exported(firstId)
  firstCast = text
  t.equal(Buffer.byteLength(text), listed[0].size, 'the whole file')
  const { events } = parseCast(t, text)
  t.ok(events.length > 0)
  t.match(await asciinemaCat(path), /hello-42/, 'asciinema cat reproduces the output')

  const table = await auth.ctl(['recordings', 'ls'])
  t.match(table.stdout, /^Session ID +User +Login +Node +Started +Duration +Size\n-+/)
  t.match(table.stdout, new RegExp(`${firstId} +carol +${login} +pi-rec `))
})

/** Invites `name` with `roles` and accepts the invitation in a home of its own: the environment to run warren as that user. */
async function loggedIn(name: string, roles: string): Promise<Record<string, string>> {
  const home = tempDir('warren-laptop-')
  const env = { HOME: home, WARREN_HOME: join(home, '.warren') }
  const added = await auth.ctl(['users', 'add', name, `--logins=${login}`, `--roles=${roles}`])
  if (added.code !== 0) throw new Error(added.stderr)
  const token = /--invite=(\S+)/.exec(added.stdout)![1]
  const signed = await signUp([`--proxy=${proxy.web}`, `--invite=${token}`, `--ca-pin=${pin}`], env, 'a long enough passphrase')
  if (signed.code !== 0) throw new Error(signed.stderr)
  return env
}

t.test('warren play replays a recording through the proxy for an editor, and refuses a user without editor', async (t) => {
  const editor = await loggedIn('eve', 'access,editor')
  const played = await warren(['play', firstId, '--speed=20'], { env: editor })
  t.equal(played.code, 0, played.stderr)
  t.match(played.stdout, /hello-42/)
  const recorded = firstCast
    .split('\n')
    .slice(1, -1)
    .map((line) => JSON.parse(line) as [number, string, string])
    .filter(([, kind]) => kind === 'o')
    .map(([, , data]) => data)
    .join('')
  for (const sequence of HOSTILE_SEQUENCES) {
    t.ok(recorded.includes(sequence), `the recording holds ${JSON.stringify(sequence)}`)
    t.notOk(played.stdout.includes(sequence), `the replay does not write ${JSON.stringify(sequence)}`)
  }
  t.ok(played.stdout.includes('text-before\x1b[31mred\x1b[0m-text-after'), 'the text and colour around them are kept')
  t.equal(played.stdout, new TerminalFilter().push(recorded) + RESET_TERMINAL, 'every output event, in order, filtered; then the terminal reset')
  for (const [undone, what] of [
    ['\x0f\x1b(B', 'shift-out and another character set'],
    ['\x1b[?1049l', 'the alternate screen'],
    ['\x1b[?2004l', 'bracketed paste'],
  ]) {
    t.ok(played.stdout.endsWith(RESET_TERMINAL) && RESET_TERMINAL.includes(undone), `a recording that leaves ${what} on does not leave it to the prompt`)
  }

  const bad = await warren(['play', firstId, '--speed=0'], { env: editor })
  t.equal(bad.code, 2)
  t.match(bad.stderr, /--speed must be a number above 0/)

  const viewer = await loggedIn('bob', 'access')
  const refused = await warren(['play', firstId], { env: viewer })
  t.not(refused.code, 0)
  t.match(refused.stderr, /roles do not grant editor/)
  t.equal(refused.stdout, '')
})

t.test('a window size change is recorded as a resize event', async (t) => {
  // ssh in a terminal of its own (script's), so that resizing that terminal makes it send a window change.
  const command = `exec ssh -tt -F ${join(profile, 'ssh_config')} -o BatchMode=yes ${login}@pi-rec`
  const script = spawn('script', ['-q', '-e', '-c', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] })
  let output = ''
  script.stdout.on('data', (data) => (output += data))
  const exited = once(script, 'exit')
  const until = async (what: RegExp) => {
    for (let i = 0; i < 200 && !what.test(output); i++) await sleep(100)
    t.match(output, what)
  }
  script.stdin.write('echo ready-$((1+1))\n')
  await until(/ready-2/)
  const ssh = readFileSync(`/proc/${script.pid}/task/${script.pid}/children`, 'utf8').trim().split(' ')[0]
  const tty = readlinkSync(`/proc/${ssh}/fd/0`)
  execFileSync('stty', ['-F', tty, 'cols', '101', 'rows', '31'])
  script.stdin.write('sleep 1; echo size-$(stty size | tr " " x)\n')
  await until(/size-31x101/)
  script.stdin.write('exit\n')
  await exited

  const listed = await completeRecordings(2)
  const resized = listed.find((r) => r.session_id !== firstId)!
  const { events } = parseCast(t, (await exported(resized.session_id)).text)
  t.ok(
    events.some(([, kind, size]) => kind === 'r' && size === '101x31'),
    'a resize event with the new size',
  )
})

t.test('a node cannot add to the recording of another node', async (t) => {
  const { token } = await auth.api<{ token: string }>('POST', '/v1/tokens', { roles: 'node', ttl_ms: 300_000 })
  const other = await joinCluster({ authServer: auth.address, token, caPins: [pin], nodename: 'pi-other', roles: ['node'], warn: () => {} })
  const client = new ApiClient({ server: auth.address, caPems: other.hostCAPems, certPem: other.tlsCertPem, keyPem: other.tlsKeyPem })
  t.teardown(() => client.close())
  const forged = Buffer.from('[0.5, "o", "forged output\\r\\n"]\n').toString('base64')
  for (const offset of [0, Buffer.byteLength(firstCast)]) {
    const refused = await client.call('POST /v1/recordings/chunks', { body: { session_id: firstId, offset, data: forged, end: true } }).catch((error: unknown) => error)
    t.type(refused, ApiError)
    t.equal((refused as ApiError).status, 403, `refused at offset ${offset}`)
  }
  t.equal((await exported(firstId)).text, firstCast, 'the recording is unchanged')
})

t.test("a recording refused (too long, or past the node's quota) is an audit event, only in the name of a node that proved it", async (t) => {
  const { token } = await auth.api<{ token: string }>('POST', '/v1/tokens', { roles: 'node', ttl_ms: 300_000 })
  const big = await joinCluster({ authServer: auth.address, token, caPins: [pin], nodename: 'pi-big', roles: ['node'], warn: () => {} })
  const client = new ApiClient({ server: auth.address, caPems: big.hostCAPems, certPem: big.tlsCertPem, keyPem: big.tlsKeyPem })
  t.teardown(() => client.close())
  const refusedEvents = async (sessionId: string) =>
    (await auth.api<{ events: AuditEvent[] }>('GET', '/v1/audit/events?type=recording.refused')).events.filter((event) => event.session_id === sessionId)
  const tooLong = { session_id: randomUUID(), offset: MAX_RECORDING_BYTES + 2048, data: Buffer.from('x').toString('base64'), end: true }
  await t.rejects(client.call('POST /v1/recordings/chunks', { body: tooLong }), { status: 413, message: /at most/ })
  t.match(await refusedEvents(tooLong.session_id), [{ node: 'pi-big', host_id: big.hostId, reason: /at most/ }], 'the node sees it dropped; the log says so')
  await t.rejects(client.call('POST /v1/recordings/chunks', { body: tooLong }), { status: 413, message: /at most/ })
  t.equal((await refusedEvents(tooLong.session_id)).length, 1, 'once per recording, however often it is sent')
  // A node choosing new session IDs to refuse: within its budget of events, not one event per request.
  const flood = Array.from({ length: NODE_EVENT_BURST + 100 }, () => ({ ...tooLong, session_id: randomUUID() }))
  for (let i = 0; i < flood.length; i += 50) {
    await Promise.all(flood.slice(i, i + 50).map((chunk) => client.call('POST /v1/recordings/chunks', { body: chunk }).catch(() => undefined)))
  }
  const flooded = new Set<string>(flood.map((chunk) => chunk.session_id))
  const stored = (await auth.api<{ events: AuditEvent[] }>('GET', '/v1/audit/events?type=recording.refused')).events.filter((event) => flooded.has(String(event.session_id)))
  t.ok(stored.length < flood.length, `a flood of ${flood.length} refusals is not as many events (${stored.length})`)

  // A proxy's stolen keys relaying such a chunk in the node's name, unsigned: nothing recorded.
  const stolen = loadIdentity(proxy.dataDir, 'proxy')!
  const asProxy = new ApiClient({ server: auth.address, caPems: stolen.hostCAPems, certPem: stolen.tlsCertPem, keyPem: stolen.tlsKeyPem })
  t.teardown(() => asProxy.close())
  const forged = { ...tooLong, session_id: randomUUID() }
  await t.rejects(asProxy.call('POST /v1/proxies/recording-chunks', { body: { host_id: big.hostId, ...forged } }), { status: 400, message: /not signed by/ })
  t.same(await refusedEvents(forged.session_id), [], 'a forged refusal is not in the log')
})

t.test('a session cut by killing the proxy is uploaded whole once the proxy is back', async (t) => {
  const known = new Set((await recordingsLs()).map((r) => r.session_id))
  let printed!: () => void
  const before = new Promise<void>((resolve) => (printed = resolve))
  const session = interactive(['echo before-$((2*21))'], (output) => output.includes('before-42') && printed())
  await before
  await proxy.stop('SIGKILL')
  const { code } = await session.done
  t.not(code, 0, 'ssh lost its connection')
  // The session ended on the node with its tunnel; the recording waits there for a way.
  await sleep(1000)
  t.equal((await recordingsLs()).length, 2, 'not uploaded while the proxy is down')

  await proxy.start()
  const listed = await completeRecordings(3)
  const cut = listed.find((r) => !known.has(r.session_id))
  t.match(cut, { user: 'carol', node: 'pi-rec', complete: true })
  const { path, text } = await exported(cut!.session_id)
  t.equal(Buffer.byteLength(text), cut!.size)
  parseCast(t, text)
  t.match(await asciinemaCat(path), /before-42/)
})

t.test('auth_service.recording: off keeps nothing and tells the node', async (t) => {
  const quiet = await new AuthProcess({ authServiceYaml: '  recording: off\n' }).start()
  t.teardown(() => quiet.stop())
  const { token } = await quiet.api<{ token: string }>('POST', '/v1/tokens', { roles: 'node', ttl_ms: 300_000 })
  const identity = await joinCluster({ authServer: quiet.address, token, caPins: [await quiet.pin()], nodename: 'pi-quiet', roles: ['node'], warn: () => {} })
  const client = new ApiClient({ server: quiet.address, caPems: identity.hostCAPems, certPem: identity.tlsCertPem, keyPem: identity.tlsKeyPem })
  t.teardown(() => client.close())
  const data = Buffer.from(firstCast).toString('base64')
  t.same(await client.call('POST /v1/recordings/chunks', { body: { session_id: firstId, offset: 0, data, end: true } }), {
    length: Buffer.byteLength(firstCast),
    complete: true,
    recording: 'off',
  })
  const listed = await quiet.ctl(['recordings', 'ls'])
  t.equal(listed.stdout, 'No recordings found.\n')
})

t.test('a direct node uploads its recordings to the auth server itself', async (t) => {
  const known = new Set((await recordingsLs()).map((r) => r.session_id))
  const directDir = tempDir()
  const config = join(directDir, 'warren.yaml')
  writeFileSync(config, ['version: v1', `data_dir: ${directDir}`, 'ssh_service:', '  listen_addr: 127.0.0.1:0'].join('\n'))
  const direct = startNode([`--config=${config}`, `--auth-server=${auth.address}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=pi-direct'])
  t.teardown(() => direct.stop())
  await waitForNode(auth, 'pi-direct')

  const { code, output } = await interactive(['echo direct-$((6*7))', 'exit'], undefined, 'pi-direct').done
  t.equal(code, 0, output)
  t.match(output, /direct-42/)
  const listed = await completeRecordings(known.size + 1)
  const recording = listed.find((r) => !known.has(r.session_id))
  t.match(recording, { user: 'carol', login, node: 'pi-direct', complete: true }, 'recorded on the direct node and uploaded whole')
  const { path, text } = await exported(recording!.session_id)
  parseCast(t, text)
  t.match(await asciinemaCat(path), /direct-42/, 'asciinema cat reproduces its output')
})
