// The web console's server, from outside as a browser meets it (Node's https and the ws
// client; the browser itself is tested apart): invitations and login with a password and a
// TOTP code from oathtool, the session cookie's flags, CSRF and Origin refusals that change
// nothing, the user's roles deciding which nodes are listed and reachable, the terminal
// WebSocket (a shell on a node through its tunnel: output, resize, exit status or the signal
// that killed it, a node gone under it, the audit trail), one session at two proxies of the
// cluster, logout, and a locked or removed user.

import { chmodSync, existsSync, writeFileSync } from 'node:fs'
import { request } from 'node:https'
import { join } from 'node:path'
import t from 'tap'
import { WebSocket } from 'ws'
import type { AuditEvent } from '../shared/protocol/audit.ts'
import { AuthProcess, type Daemon, JSON_LOGS, ProxyProcess, ROOT, run, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'
import { type Answer, web } from './helpers/console-requests.ts'
import { codeAt, stepNow } from './helpers/people.ts'
import { until } from './helpers/until.ts'

t.setTimeout(120_000)

const PASSWORD = 'a long enough passphrase'
const LAB_ROLE = `kind: role
version: v1
metadata:
  name: lab
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels:
      env: lab
`
const login = testLogin()
const auth = await new AuthProcess().start()
t.teardown(() => auth.stop())
const pin = await auth.pin()
const startProxy = async (nodename: string) => {
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, nodename, extraYaml: JSON_LOGS }).start()
  t.teardown(() => proxy.stop())
  return proxy
}
const proxyA = await startProxy('proxy-a')
const proxyB = await startProxy('proxy-b')

async function node(name: string, env: string): Promise<Daemon> {
  const dir = tempDir()
  const config = join(dir, 'warren.yaml')
  writeFileSync(config, ['version: v1', `data_dir: ${dir}`, `labels: { env: ${env} }`, 'ssh_service:', '  listen_addr: 127.0.0.1:0', JSON_LOGS].join('\n'))
  const daemon = startNode([`--config=${config}`, `--auth-server=${proxyA.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, `--nodename=${name}`])
  t.teardown(() => daemon.stop())
  await waitForNode(auth, name)
  return daemon
}
const labPi = await node('lab-pi', 'lab')
await node('prod-pi', 'prod')
/** What the lab node and proxy A logged last, above debug: shown with a terminal assertion that fails, not checked. */
const recentLogs = () => {
  const last = (stderr: string) =>
    stderr
      .split('\n')
      .filter((line) => line && !line.includes('"level":"debug"'))
      .slice(-20)
      .join('\n')
  return { proxy_a: last(proxyA.daemon.stderr), lab_pi: last(labPi.stderr) }
}
const created = await run(join(ROOT, 'cli/warrenctl.ts'), ['create', '-f', '-', `--data-dir=${auth.dataDir}`], { input: LAB_ROLE })
if (created.code !== 0) throw new Error(`create role: ${created.stderr}`)

/** The cookie's `name=value` from a Set-Cookie header, and the whole header. */
function cookieOf(answer: Answer): { cookie: string; header: string } {
  const header = ([] as string[]).concat(answer.headers['set-cookie'] ?? [])[0] ?? ''
  return { cookie: header.split(';')[0], header }
}

interface Person {
  cookie: string
  csrf: string
  secret: string
  step: number
}

/** Invites `name` with `roles` and accepts the invitation in the console: the session it opens. */
async function invited(name: string, roles: string): Promise<Person> {
  const added = await auth.ctl(['users', 'add', name, `--logins=${login}`, `--roles=${roles}`])
  const token = /--invite=([0-9a-f]{32})$/m.exec(added.stdout)?.[1]
  if (!token) throw new Error(`users add: ${added.stdout}${added.stderr}`)
  const started = await web(proxyA.web, 'POST', '/web/api/invite/start', { body: { token } })
  if (started.status !== 200) throw new Error(`invite/start: ${started.text}`)
  const secret = new URL(started.body.otpauth_uri as string).searchParams.get('secret')!
  const step = stepNow()
  const completed = await web(proxyA.web, 'POST', '/web/api/invite/complete', { body: { token, password: PASSWORD, totp_code: codeAt(secret, step) } })
  if (completed.status !== 200) throw new Error(`invite/complete: ${completed.text}`)
  return { cookie: cookieOf(completed).cookie, csrf: completed.body.csrf_token as string, secret, step }
}

const alice = await invited('alice', 'access,editor')
const bob = await invited('bob', 'lab')

t.test('an invitation shows its QR code; login with password and TOTP sets a strict cookie', async (t) => {
  const added = await auth.ctl(['users', 'add', 'dora', `--logins=${login}`])
  const token = /--invite=([0-9a-f]{32})$/m.exec(added.stdout)![1]
  const started = await web(proxyA.web, 'POST', '/web/api/invite/start', { body: { token } })
  t.equal(started.status, 200, started.text)
  t.equal(started.body.user, 'dora')
  t.match(started.body.qr_svg, /<svg[\s\S]*<\/svg>/)
  t.match(started.body.otpauth_uri, /^otpauth:\/\/totp\//)

  const step = Math.max(stepNow(), alice.step + 1)
  const wrong = await web(proxyA.web, 'POST', '/web/api/login', { body: { user: 'alice', password: 'not the password', totp_code: codeAt(alice.secret, step) } })
  t.equal(wrong.status, 401)
  t.notOk(wrong.headers['set-cookie'], 'no cookie for a wrong password')
  const answer = await web(proxyA.web, 'POST', '/web/api/login', { body: { user: 'alice', password: PASSWORD, totp_code: codeAt(alice.secret, step) } })
  t.equal(answer.status, 200, answer.text)
  const { header } = cookieOf(answer)
  t.match(header, /^__Host-warren_session=[A-Za-z0-9_-]{43,}; /)
  for (const flag of ['HttpOnly', 'Secure', 'SameSite=Strict', 'Path=/']) t.ok(header.split('; ').includes(flag), flag)
  t.equal(answer.body.user, 'alice')
  t.ok(Date.parse(answer.body.expires as string) > Date.now())
  const session = await web(proxyA.web, 'GET', '/web/api/session', { cookie: cookieOf(answer).cookie })
  t.equal(session.status, 200)
  t.match(session.body, { user: 'alice', roles: ['access', 'editor'], editor: true, csrf_token: answer.body.csrf_token })
  t.equal((await web(proxyA.web, 'GET', '/web/api/session')).status, 401, 'no cookie: 401')

  const events = await auth.api<{ events: AuditEvent[] }>('GET', '/v1/audit/events?type=login&user=alice')
  t.ok(
    events.events.some((e) => e.success === true && e.method === 'web'),
    'the login is audited with method web',
  )
  t.notOk(JSON.stringify(events).includes(PASSWORD), 'never the password')
  const accepted = await auth.api<{ events: AuditEvent[] }>('GET', '/v1/audit/events?type=invite.accepted&user=alice')
  t.match(accepted.events, [{ user: 'alice', method: 'web' }], 'the invitation accepted in the console too')

  const asForm = await new Promise<number>((resolve, reject) => {
    const req = request(
      `https://${proxyA.web}/web/api/login`,
      { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, rejectUnauthorized: false },
      (res) => {
        res.resume()
        resolve(res.statusCode ?? 0)
      },
    )
    req.on('error', reject)
    req.end('user=alice&password=x&totp_code=1')
  })
  t.equal(asForm, 415, 'a form post is no JSON: refused')
  const huge = await web(proxyA.web, 'POST', '/web/api/login', { body: { user: 'alice', password: 'x'.repeat(70_000), totp_code: '1' } })
  t.equal(huge.status, 413, 'a body over 64 KiB: refused')
})

t.test('a POST without the CSRF token, with a wrong one or from a foreign Origin is refused and changes nothing', async (t) => {
  const tokens = async () => (await auth.ctl(['tokens', 'ls', '--format=json'])).stdout
  const before = await tokens()
  const body = { roles: 'node', ttl_ms: 600_000 }
  const without = await web(proxyA.web, 'POST', '/web/api/tokens', { cookie: alice.cookie, body })
  t.equal(without.status, 403)
  t.match(without.body.error, /CSRF/)
  const wrong = await web(proxyA.web, 'POST', '/web/api/tokens', { cookie: alice.cookie, csrf: bob.csrf, body })
  t.equal(wrong.status, 403)
  const foreign = await web(proxyA.web, 'POST', '/web/api/tokens', { cookie: alice.cookie, csrf: alice.csrf, body, origin: 'https://evil.example' })
  t.equal(foreign.status, 403)
  const foreignLogout = await web(proxyA.web, 'POST', '/web/api/logout', { cookie: alice.cookie, csrf: alice.csrf, origin: 'https://evil.example' })
  t.equal(foreignLogout.status, 403)
  t.equal(await tokens(), before, 'no token was made')
  t.equal((await web(proxyA.web, 'GET', '/web/api/session', { cookie: alice.cookie })).status, 200, 'and the session is still there')

  const made = await web(proxyA.web, 'POST', '/web/api/tokens', { cookie: alice.cookie, csrf: alice.csrf, body })
  t.equal(made.status, 200, `with the token and the console's origin it is done: ${made.text}`)
  t.not(await tokens(), before)
  // A route with a path parameter, carried as it came: refused without the token, done with it.
  const id = (made.body as { id: string }).id
  const revokeWithout = await web(proxyA.web, 'DELETE', `/web/api/tokens/${id}`, { cookie: alice.cookie })
  t.equal(revokeWithout.status, 403, 'a revocation without the CSRF token is refused')
  t.match(await tokens(), id, 'and the token stays')
  const revoked = await web(proxyA.web, 'DELETE', `/web/api/tokens/${id}`, { cookie: alice.cookie, csrf: alice.csrf })
  t.same(revoked.body, { id }, `with it the token is revoked: ${revoked.text}`)
  t.notMatch(await tokens(), id)
  const notEditor = await web(proxyA.web, 'POST', '/web/api/tokens', { cookie: bob.cookie, csrf: bob.csrf, body })
  t.equal(notEditor.status, 403, 'a user whose roles do not grant editor is refused by the auth server')
})

t.test('the auth server takes a web session only from a proxy', async (t) => {
  const token = alice.cookie.slice('__Host-warren_session='.length)
  for (const path of ['/v1/user/nodes', '/v1/tokens', '/v1/web-sessions/current']) {
    const answer = await new Promise<number>((resolve, reject) => {
      const req = request(`https://${auth.address}${path}`, { headers: { 'x-warren-web-session': token }, rejectUnauthorized: false }, (res) => {
        res.resume()
        resolve(res.statusCode ?? 0)
      })
      req.on('error', reject)
      req.end()
    })
    t.ok(answer === 401 || answer === 403, `${path} without a proxy's certificate: ${answer}`)
  }
})

/** A terminal to `node` as the test's login, with the session of `person`; its output so far and its last control message. */
function terminal(proxy: string, person: Person, node: string, size = { cols: 80, rows: 24 }) {
  const query = new URLSearchParams({ node, login, cols: String(size.cols), rows: String(size.rows), csrf: person.csrf })
  const ws = new WebSocket(`wss://${proxy}/web/api/terminal?${query}`, { headers: { cookie: person.cookie, origin: `https://${proxy}` }, rejectUnauthorized: false })
  const state = { output: '', control: undefined as undefined | { type: string; status?: number | null; signal?: string; message?: string }, closed: false }
  ws.on('message', (data, isBinary) => {
    if (isBinary) state.output += data.toString()
    else state.control = JSON.parse(data.toString())
  })
  ws.on('close', () => (state.closed = true))
  ws.on('error', () => {})
  return { ws, state, type: (text: string) => ws.send(Buffer.from(text), { binary: true }) }
}

t.test('the terminal: a shell on the node, resized, with its exit status, in the audit trail', async (t) => {
  const term = terminal(proxyA.web, alice, 'lab-pi')
  term.ws.once('open', () => term.type('echo $((6*7))\n'))
  // What is typed before the shell's first prompt is echoed before it: 42 may follow a prompt.
  await until('42 in the terminal', () => /^(\$ )?42\r?$/m.test(term.state.output), { timeoutMs: 30_000 })
  // What is typed after a resize reaches the terminal after its new size, as with sshd. A
  // program already running reads the size as soon as a line arrives (an ioctl, no process
  // to start), so a keystroke that overtook the resize would show the old size.
  term.type(`perl -e '$|=1; print "re"."ady\\n"; while (<STDIN>) { my $w = "\\0" x 8; ioctl(STDIN, 0x5413, $w); printf "size=%d %d\\n", unpack("S2", $w) }'\n`)
  await until('the size reader', () => /^ready\r?$/m.test(term.state.output), { timeoutMs: 15_000 })
  term.ws.send(JSON.stringify({ type: 'resize', cols: 100, rows: 30 }))
  term.type('\n')
  await until('the size', () => /size=\d+ \d+/.test(term.state.output), { timeoutMs: 15_000 })
  t.match(term.state.output, /size=30 100/, 'the new size, not the old')
  term.type('\x04') // end of input: the reader exits
  term.type('exit 3\n')
  await until('the terminal to close', () => term.state.closed, { timeoutMs: 15_000 })
  t.same(term.state.control, { type: 'exit', status: 3 })
  let events: AuditEvent[] = []
  await until('the session in the audit log', async () => {
    events = (await auth.api<{ events: AuditEvent[] }>('GET', '/v1/audit/events?type=session.end&node=lab-pi')).events
    return events.length > 0
  })
  t.match(events[0], { user: 'alice', login, node: 'lab-pi', exit_status: 3 })
})

t.test('a browser that stops reading holds back the shell on the node, and then gets every byte', async (t) => {
  // Where the login (not root) may write.
  const markerDir = tempDir()
  chmodSync(markerDir, 0o777)
  const marker = join(markerDir, 'done')
  const bytes = 200_000_000
  const query = new URLSearchParams({ node: 'lab-pi', login, cols: '80', rows: '24', csrf: alice.csrf })
  const ws = new WebSocket(`wss://${proxyA.web}/web/api/terminal?${query}`, { headers: { cookie: alice.cookie, origin: `https://${proxyA.web}` }, rejectUnauthorized: false })
  ws.on('error', () => {})
  t.teardown(() => ws.terminate())
  let received = 0
  let tail = ''
  ws.on('message', (data: Buffer, isBinary) => {
    if (!isBinary) return
    received += data.length
    tail = (tail + data.toString('latin1')).slice(-64)
  })
  await new Promise((resolve) => ws.once('open', resolve))
  // The browser reads nothing from now on (its socket paused), while the shell writes far
  // more than every buffer on the way holds; a file on the node says when it has written all.
  ws.pause()
  ws.send(Buffer.from(`head -c ${bytes} /dev/zero | tr '\\0' x; echo; touch ${marker}; echo finished-$((6*7))\n`), { binary: true })
  await new Promise((resolve) => setTimeout(resolve, 8000))
  t.notOk(existsSync(marker), 'the command is still held back on the node while the browser reads nothing')
  ws.resume()
  await until('the output to end', () => tail.includes('finished-42'), { timeoutMs: 120_000 })
  t.ok(existsSync(marker), 'the command went on once the browser read again')
  t.ok(received >= bytes, `every byte reached the browser (${received} bytes received for ${bytes} written)`)
})

t.test('a frame the WebSocket protocol refuses closes that terminal, never the proxy', async (t) => {
  const broken = terminal(proxyA.web, alice, 'lab-pi')
  await new Promise((resolve) => broken.ws.once('open', resolve))
  // Over the terminal's largest frame (64 KiB): ws answers it with an error on the socket.
  broken.type('x'.repeat(70 * 1024))
  await until('the terminal to close', () => broken.state.closed, { timeoutMs: 15_000 })
  t.ok(proxyA.daemon.running, 'the proxy runs on')
  const next = terminal(proxyA.web, alice, 'lab-pi')
  t.teardown(() => next.ws.terminate())
  next.ws.once('open', () => next.type('echo $((7*6))\n'))
  await until('42 in a new terminal', () => /^(\$ )?42\r?$/m.test(next.state.output) || next.state.closed, { timeoutMs: 30_000 })
  t.match(next.state.output, /42/, 'and opens the next terminal')
})

t.test('a user whose roles do not allow a node neither lists it nor opens a terminal to it', async (t) => {
  const listed = await web(proxyA.web, 'GET', '/web/api/user/nodes', { cookie: bob.cookie })
  t.equal(listed.status, 200, listed.text)
  t.same(
    (listed.body.nodes as { nodename: string }[]).map((n) => n.nodename),
    ['lab-pi'],
  )
  const all = await web(proxyA.web, 'GET', '/web/api/user/nodes?all=true', { cookie: alice.cookie })
  t.same(
    (all.body.nodes as { nodename: string }[]).map((n) => n.nodename),
    ['lab-pi', 'prod-pi'],
  )
  const [lab] = listed.body.nodes as Record<string, unknown>[]
  t.match(lab, { status: 'online', tunnel: true, version: String, cert_expires: Number, logins: [login], labels: { env: 'lab' } }, 'what the Nodes page shows')
  t.equal((lab.proxies as { live: number }).live, 2, 'of two live proxies')
  const term = terminal(proxyA.web, bob, 'prod-pi')
  await until('the terminal to close', () => term.state.closed, { timeoutMs: 15_000 })
  t.equal(term.state.control?.type, 'error')
  t.match(term.state.control?.message, /prod-pi/)
  t.equal(term.state.output, '', 'no byte of a shell')

  const noCsrf = terminal(proxyA.web, { ...bob, csrf: 'wrong' }, 'lab-pi')
  const refused = await new Promise<number>((resolve) => noCsrf.ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)))
  t.equal(refused, 403, 'a wrong CSRF token: no upgrade')
})

t.test('a session made at one proxy works at another; logout ends it at both', async (t) => {
  const step = Math.max(stepNow(), bob.step + 1)
  const answer = await web(proxyA.web, 'POST', '/web/api/login', { body: { user: 'bob', password: PASSWORD, totp_code: codeAt(bob.secret, step) } })
  t.equal(answer.status, 200, answer.text)
  const cookie = cookieOf(answer).cookie
  const atB = await web(proxyB.web, 'GET', '/web/api/session', { cookie })
  t.equal(atB.status, 200, atB.text)
  t.equal(atB.body.user, 'bob')
  const out = await web(proxyB.web, 'POST', '/web/api/logout', { cookie, csrf: answer.body.csrf_token as string })
  t.equal(out.status, 200, out.text)
  t.match(cookieOf(out).header, /Max-Age=0/)
  t.equal((await web(proxyA.web, 'GET', '/web/api/session', { cookie })).status, 401)
  t.equal((await web(proxyB.web, 'GET', '/web/api/user/nodes', { cookie })).status, 401)
})

t.test('a locked or removed user has no session', async (t) => {
  t.equal((await web(proxyB.web, 'GET', '/web/api/session', { cookie: bob.cookie })).status, 200)
  const locked = await auth.ctl(['lock', '--user=bob', '--message=lost laptop'])
  t.equal(locked.code, 0, locked.stderr)
  t.equal((await web(proxyB.web, 'GET', '/web/api/session', { cookie: bob.cookie })).status, 401)
  t.equal((await web(proxyB.web, 'GET', '/web/api/user/nodes', { cookie: bob.cookie })).status, 401)
  // The session ended with the lock: lifting it does not bring a stolen cookie back.
  const lockId = /with ID "([^"]+)"/.exec(locked.stdout)![1]
  t.equal((await auth.ctl(['lock', 'rm', lockId])).code, 0)
  t.equal((await web(proxyB.web, 'GET', '/web/api/session', { cookie: bob.cookie })).status, 401, 'the session stays ended once the lock is lifted')
  const carol = await invited('carol', 'access')
  t.equal((await web(proxyA.web, 'GET', '/web/api/session', { cookie: carol.cookie })).status, 200)
  const term = terminal(proxyA.web, carol, 'lab-pi')
  term.ws.once('open', () => term.type('echo carol-$((2+3))\n'))
  await until("carol's shell", () => /^(\$ )?carol-5\r?$/m.test(term.state.output), { timeoutMs: 30_000 })
  t.equal((await auth.ctl(['users', 'rm', 'carol'])).code, 0)
  t.equal((await web(proxyA.web, 'GET', '/web/api/session', { cookie: carol.cookie })).status, 401)
  await until("carol's terminal to close", () => term.state.closed, { timeoutMs: 15_000 })
  // Closed by the removal the proxy hears of, or by the periodic check of the terminals' sessions
  // if that runs first: the removal ended her session too (her user gone before her sessions).
  t.match(term.state.control, { type: 'error', message: /removed|no valid web session|no longer exists/ }, 'her open terminal is closed too', { logs: recentLogs() })
})

t.test('users reset closes the terminal its certificate opened before the reset; the new invitation opens one that works', async (t) => {
  const dave = await invited('dave', 'access')
  const before = terminal(proxyA.web, dave, 'lab-pi')
  before.ws.once('open', () => before.type('echo dave-$((2+3))\n'))
  await until("dave's shell", () => /^(\$ )?dave-5\r?$/m.test(before.state.output), { timeoutMs: 30_000 })
  const reset = await auth.ctl(['users', 'reset', 'dave'])
  t.equal(reset.code, 0, reset.stderr)
  t.equal((await web(proxyA.web, 'GET', '/web/api/session', { cookie: dave.cookie })).status, 401, 'the session ended')
  await until("dave's terminal to close", () => before.state.closed, { timeoutMs: 15_000 })
  // Closed by the lock the proxy hears of, or by the periodic check of the terminals' sessions
  // if that runs first: the reset ended his session too (during the reset, or after it).
  t.match(
    before.state.control,
    { type: 'error', message: /issued before .* locked: the user was reset|was reset since this session began|no valid web session/ },
    'the open terminal is closed too',
    { logs: recentLogs() },
  )

  const token = /--invite=([0-9a-f]{32})$/m.exec(reset.stdout)![1]
  const started = await web(proxyA.web, 'POST', '/web/api/invite/start', { body: { token } })
  t.equal(started.status, 200, 'the new invitation opens')
  const secret = new URL(started.body.otpauth_uri as string).searchParams.get('secret')!
  const completed = await web(proxyA.web, 'POST', '/web/api/invite/complete', { body: { token, password: PASSWORD, totp_code: codeAt(secret, stepNow()) } })
  t.equal(completed.status, 200, 'and is accepted')
  const after = terminal(proxyA.web, { cookie: cookieOf(completed).cookie, csrf: completed.body.csrf_token as string, secret, step: stepNow() }, 'lab-pi')
  after.ws.once('open', () => after.type('echo again-$((2+3))\n'))
  // Until its shell answers, or the terminal closes (which the assertions then show, with why).
  await until("dave's new shell", () => /^(\$ )?again-5\r?$/m.test(after.state.output) || after.state.closed, { timeoutMs: 30_000 }).catch((error: Error) => {
    const { proxy_a, lab_pi } = recentLogs()
    throw new Error(`${error.message}: ${JSON.stringify(after.state)}\nproxy A logged last:\n${proxy_a}\nthe node logged last:\n${lab_pi}`)
  })
  t.match(after.state.output, /^(\$ )?again-5\r?$/m, "the new sign-up's shell answers", { control: after.state.control, logs: recentLogs() })
  t.notOk(after.state.closed, 'the terminal of the new sign-up stays open', { control: after.state.control })
  after.ws.close()
})

t.test('every /web answer carries the content security policy', async (t) => {
  for (const path of ['/web/', '/web/nodes', '/web/api/session']) {
    const answer = await web(proxyA.web, 'GET', path)
    t.match(answer.headers['content-security-policy'], /^default-src 'self'; script-src 'self';/, path)
    t.notMatch(answer.headers['content-security-policy'], /script-src[^;]*unsafe-inline/)
    t.equal(answer.headers['x-frame-options'], 'DENY')
    t.equal(answer.headers['x-content-type-options'], 'nosniff')
    t.equal(answer.headers['strict-transport-security'], 'max-age=31536000', 'HTTPS only, from now on')
  }
})

t.test('a shell killed by a signal ends its terminal saying which; a terminal whose node goes away says its connection was cut', async (t) => {
  const killed = terminal(proxyA.web, alice, 'lab-pi')
  killed.ws.once('open', () => killed.type('kill -KILL $$\n'))
  await until('the terminal to close', () => killed.state.closed, { timeoutMs: 30_000 })
  t.same(killed.state.control, { type: 'exit', status: null, signal: 'SIGKILL' })

  // A node of its own, which goes for good: the others stay for the tests above.
  const gone = await node('gone-pi', 'gone')
  const cut = terminal(proxyA.web, alice, 'gone-pi')
  cut.ws.once('open', () => cut.type('echo here-$((2+3))\n'))
  await until('the shell on gone-pi', () => /^(\$ )?here-5\r?$/m.test(cut.state.output), { timeoutMs: 30_000 })
  await gone.stop('SIGKILL')
  await until('the terminal to close', () => cut.state.closed, { timeoutMs: 15_000 })
  t.match(cut.state.control, { type: 'error', message: /^the connection to node "gone-pi" was cut/ }, 'not an exit with no status')
})
