// The web console's session against an attacker: a terminal lasts no longer than the
// session it was opened with (logout here or at another proxy, expiry), and a session
// cookie planted in a victim's browser by a sibling domain is not the session the victim
// then uses. Real auth server, two proxies, a tunnelled node; Debian's chromium for the
// planted cookie.

import { writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import t from 'tap'
import { WebSocket } from 'ws'
import { builtInCheckout } from '../proxy/web-console/build.ts'
import { CHROMIUM, chromiumMissing, spkiPin } from './helpers/browser.ts'
import { AuthProcess, JSON_LOGS, ProxyProcess, ROOT, run, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'
import { type Answer, web } from './helpers/console-requests.ts'
import { codeAt, stepNow } from './helpers/people.ts'
import { until } from './helpers/until.ts'

t.setTimeout(240_000)

const PASSWORD = 'a long enough passphrase'
/** A session of this role lasts 20 s. */
const BRIEF_ROLE = `kind: role
version: v1
metadata:
  name: brief
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels: { env: lab }
  options:
    max_session_ttl: 20s
`
await builtInCheckout()
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
{
  const dir = tempDir()
  const config = join(dir, 'warren.yaml')
  writeFileSync(config, ['version: v1', `data_dir: ${dir}`, 'labels: { env: lab }', 'ssh_service:', '  listen_addr: 127.0.0.1:0', JSON_LOGS].join('\n'))
  const daemon = startNode([`--config=${config}`, `--auth-server=${proxyA.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, '--nodename=lab-pi'])
  t.teardown(() => daemon.stop())
  await waitForNode(auth, 'lab-pi')
}
/** One SSH connection at once: a terminal counts as one. */
const SINGLE_ROLE = `kind: role
version: v1
metadata:
  name: single
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels: { env: lab }
  options:
    max_connections: 1
`
for (const input of [BRIEF_ROLE, SINGLE_ROLE]) {
  const created = await run(join(ROOT, 'cli/warrenctl.ts'), ['create', '-f', '-', `--data-dir=${auth.dataDir}`], { input })
  if (created.code !== 0) throw new Error(`create role: ${created.stderr}`)
}

/** The Set-Cookie header of an answer. */
const setCookieOf = (answer: Answer) => ([] as string[]).concat(answer.headers['set-cookie'] ?? [])[0] ?? ''

interface Session {
  /** `name=value`, as a browser sends it back. */
  cookie: string
  csrf: string
}

interface Person {
  name: string
  secret: string
  step: number
  session: Session
}

const sessionOf = (answer: Answer): Session => ({ cookie: setCookieOf(answer).split(';')[0], csrf: answer.body.csrf_token as string })

/** `warrenctl users add`, then the invitation accepted in the console: the person and the session it opens. */
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
  return { name, secret, step, session: sessionOf(completed) }
}

/** Another session of `person`, with a code of a step not used before. */
async function loggedIn(person: Person): Promise<Session> {
  while (person.step > stepNow()) await new Promise((resolve) => setTimeout(resolve, 500))
  person.step = Math.max(stepNow(), person.step + 1)
  const answer = await web(proxyA.web, 'POST', '/web/api/login', { body: { user: person.name, password: PASSWORD, totp_code: codeAt(person.secret, person.step) } })
  if (answer.status !== 200) throw new Error(`login: ${answer.text}`)
  return sessionOf(answer)
}

/** A terminal to lab-pi with `session`, open and answering; its output and its last control message. */
async function openTerminal(proxy: string, session: Session) {
  const query = new URLSearchParams({ node: 'lab-pi', login, cols: '80', rows: '24', csrf: session.csrf })
  const ws = new WebSocket(`wss://${proxy}/web/api/terminal?${query}`, { headers: { cookie: session.cookie, origin: `https://${proxy}` }, rejectUnauthorized: false })
  const state = { output: '', control: undefined as undefined | { type: string; message?: string }, closed: false }
  ws.on('message', (data, isBinary) => {
    if (isBinary) state.output += data.toString()
    else state.control = JSON.parse(data.toString())
  })
  ws.on('close', () => (state.closed = true))
  ws.on('error', () => {})
  t.teardown(() => ws.terminate())
  const type = (text: string) => ws.send(Buffer.from(text), { binary: true })
  /** Whether the shell still answers: `echo` of a fresh sum. */
  const answers = async (n: number) => {
    type(`echo shell-$((${n}+1))\n`)
    await until(`shell-${n + 1} in the terminal`, () => new RegExp(`^(\\$ )?shell-${n + 1}\\r?$`, 'm').test(state.output) || state.closed, { timeoutMs: 30_000 })
    return !state.closed
  }
  await new Promise((resolve, reject) => {
    ws.once('open', resolve)
    ws.once('unexpected-response', (_req, res) => reject(new Error(`terminal refused: ${res.statusCode}`)))
  })
  if (!(await answers(0))) throw new Error('the terminal closed before its shell answered')
  return { state, answers, close: () => ws.close() }
}

t.test('logout closes the terminals of that session at once, and not those of another session of the same user', async (t) => {
  const alice = await invited('alice', 'access')
  const other = await loggedIn(alice)
  const first = await openTerminal(proxyA.web, alice.session)
  const second = await openTerminal(proxyA.web, other)
  const out = await web(proxyA.web, 'POST', '/web/api/logout', { cookie: alice.session.cookie, csrf: alice.session.csrf })
  t.equal(out.status, 200, out.text)
  await until('the logged-out terminal to close', () => first.state.closed, { timeoutMs: 10_000 })
  t.match(first.state.control, { type: 'error', message: /logged out/ })
  t.ok(await second.answers(1), "the other session's terminal still has its shell")

  // Logged out at another proxy: the auth server no longer knows the session, and the
  // proxy holding the terminal asks it again within SESSION_RECHECK_MS (30 s).
  const elsewhere = await web(proxyB.web, 'POST', '/web/api/logout', { cookie: other.cookie, csrf: other.csrf })
  t.equal(elsewhere.status, 200, elsewhere.text)
  await until('the terminal of the session logged out at proxy B to close', () => second.state.closed, { timeoutMs: 60_000 })
  t.equal(second.state.control?.type, 'error')
})

t.test("a terminal closes when its session expires (the role's max_session_ttl)", async (t) => {
  const eve = await invited('eve', 'brief')
  const session = await web(proxyA.web, 'GET', '/web/api/session', { cookie: eve.session.cookie })
  t.ok(Date.parse(session.body.expires as string) - Date.now() <= 20_000, 'a session of 20 s')
  const term = await openTerminal(proxyA.web, eve.session)
  await until('the expired session to close its terminal', () => term.state.closed, { timeoutMs: 60_000 })
  t.match(term.state.control, { type: 'error', message: /expired/ })
  t.equal((await web(proxyA.web, 'GET', '/web/api/session', { cookie: eve.session.cookie })).status, 401)
})

t.test("a terminal counts against the roles' max_connections, vouched for to the auth server by its web session", async (t) => {
  const una = await invited('una', 'single')
  const first = await openTerminal(proxyA.web, una.session)
  // The auth server counts by the session the proxy presents: a second terminal is refused.
  await t.rejects(openTerminal(proxyA.web, una.session), /closed before its shell answered/)
  const refusal = proxyA.daemon.logEntries().find((entry) => entry.user === 'una' && entry.access_denied === true)
  t.match(refusal, { reason: /max_connections 1/ }, "refused for the roles' limit")
  t.ok(await first.answers(1), "the first terminal's shell still answers")
})

t.test("a terminal closes when the node's labels change so that the user's roles no longer allow it", async (t) => {
  const lou = await invited('lou', 'single')
  const term = await openTerminal(proxyA.web, lou.session)
  const labelled = await auth.ctl(['nodes', 'label', 'lab-pi', 'env=prod'])
  t.equal(labelled.code, 0, labelled.stderr)
  // Put back for the tests after this one, whatever it found, and seen so by the proxy (which
  // polls the assigned labels): a terminal of lou's opens again.
  t.teardown(async () => {
    await auth.ctl(['nodes', 'label', 'lab-pi', '--remove=env'])
    await until('the proxy to allow lab-pi again', async () => {
      try {
        const again = await openTerminal(proxyA.web, lou.session)
        again.close()
        return true
      } catch {
        return false
      }
    })
  })
  await until('the terminal to close', () => term.state.closed, { timeoutMs: 15_000 })
  const closed = proxyA.daemon.logEntries().find((entry) => entry.user === 'lou' && entry.access_denied === true)
  t.match(closed, { node: 'lab-pi', reason: String }, 'the proxy closed it for the roles')
  t.same(term.state.control, { type: 'error', message: closed?.reason }, 'the browser is told why')
})

t.test("a terminal closes when the user's roles no longer allow its node, within the proxy's check of its session", async (t) => {
  const shift = (env: string) => `kind: role
version: v1
metadata:
  name: night-shift
spec:
  allow:
    logins: ['{{internal.logins}}']
    node_labels: { env: ${env} }
`
  await auth.create(shift('lab'))
  const nina = await invited('nina', 'night-shift')
  const term = await openTerminal(proxyA.web, nina.session)
  // The role changed by an admin, not the node: no label change tells the proxy.
  await auth.create(shift('prod'))
  await until('the terminal to close', () => term.state.closed, { timeoutMs: 45_000 })
  const closed = proxyA.daemon.logEntries().find((entry) => entry.user === 'nina' && entry.access_denied === true)
  t.match(closed, { node: 'lab-pi', reason: String }, 'the proxy closed it for the roles')
  t.same(term.state.control, { type: 'error', message: closed?.reason }, 'the browser is told why')
})

t.test('the session cookie is a __Host- cookie: Secure, Path=/, no Domain', async (t) => {
  const mallory = await invited('mallory-cookie', 'access')
  const answer = await web(proxyA.web, 'POST', '/web/api/login', {
    body: { user: mallory.name, password: PASSWORD, totp_code: codeAt(mallory.secret, Math.max(stepNow(), mallory.step + 1)) },
  })
  t.equal(answer.status, 200, answer.text)
  const attributes = setCookieOf(answer).split('; ')
  t.match(attributes[0], /^__Host-warren_session=[A-Za-z0-9_-]{43,}$/)
  for (const flag of ['HttpOnly', 'Secure', 'SameSite=Strict', 'Path=/']) t.ok(attributes.includes(flag), flag)
  t.notOk(
    attributes.some((attribute) => /^domain=/i.test(attribute)),
    'no Domain',
  )
})

t.test("a session cookie planted by a sibling domain is not the session the victim's browser uses", { skip: chromiumMissing() }, async (t) => {
  // The attacker's own account: its session is what they plant in the victim's browser, so
  // that the victim works in a console whose shells and recordings the attacker reads.
  const mallory = await invited('mallory', 'access')
  const planted = mallory.session.cookie.slice(mallory.session.cookie.indexOf('=') + 1)
  const victim = await invited('victor', 'access')

  // console.warren.test is the proxy; evil.warren.test, a site of the same parent domain.
  const evil = createServer((_req, res) => {
    res.writeHead(200, {
      'content-type': 'text/html',
      'set-cookie': [
        `warren_session=${planted}; Domain=warren.test; Path=/web/api`,
        // No __Host- cookie to the browser, which sends it first (the longer path), but the
        // session cookie's name to a server that trims a no-break space off names.
        `\u00a0__Host-warren_session=${planted}; Domain=warren.test; Path=/web/api`,
        `__Host-warren_session=${planted}; Path=/`,
        `__Host-warren_session=${planted}; Domain=warren.test; Path=/; Secure`,
      ],
    })
    res.end('<p>nothing to see</p>')
  })
  evil.listen(0, '127.0.0.1')
  t.teardown(() => evil.close())
  await new Promise((resolve) => evil.once('listening', resolve))
  const evilPort = (evil.address() as AddressInfo).port
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [`--ignore-certificate-errors-spki-list=${await spkiPin(proxyA.web)}`, '--host-resolver-rules=MAP *.warren.test 127.0.0.1'],
    timeout: 30_000,
  })
  t.teardown(() => browser.close())
  const context = await browser.newContext()
  const page = await context.newPage()
  await page.goto(`http://evil.warren.test:${evilPort}/`)
  t.ok(
    (await context.cookies()).some((cookie) => cookie.value === planted),
    'the sibling planted its cookie',
  )
  t.ok(
    (await context.cookies()).some((cookie) => cookie.name.endsWith('__Host-warren_session') && cookie.path === '/web/api'),
    'the one whose name starts with a no-break space too (a __Host- cookie could have no Domain, and only Path=/)',
  )

  const base = `https://console.warren.test:${proxyA.web.slice(proxyA.web.lastIndexOf(':') + 1)}`
  await page.goto(`${base}/web/login`)
  while (victim.step >= stepNow() + 1) await new Promise((resolve) => setTimeout(resolve, 500))
  const step = Math.max(stepNow(), victim.step + 1)
  await page.fill('#login input[name=user]', victim.name)
  await page.fill('#login input[name=password]', PASSWORD)
  await page.fill('#login input[name=totp_code]', codeAt(victim.secret, step))
  await page.click('#login button[type=submit]')
  await page.waitForURL(`${base}/web/nodes`, { timeout: 10_000 })
  const user = await page.evaluate(() => fetch('/web/api/session').then((response) => (response.json() as Promise<{ user: string }>).then((body) => body.user)))
  t.equal(user, 'victor', "the victim's console is the victim's, not the planted session's")
  t.equal(await page.textContent('header .who'), 'victorLog out')
})
