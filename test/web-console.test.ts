// The web console in a real browser: Debian's chromium, headless, driven by playwright-core,
// against a real auth server, proxy and tunnelled nodes. The browser verifies the proxy's
// certificate by its key (helpers/browser.ts). A person invited with warrenctl accepts the
// invitation in the browser (the TOTP code from oathtool), logs in, finds a node by label
// and works in a terminal to it; a person whose roles do not allow that node neither sees
// it nor reaches it, and a page of another site cannot make changes with their session;
// the session just seen is replayed from its recording in the browser.

import { writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import t from 'tap'
import type { RecordingJson } from '../shared/protocol/recordings.ts'
import { chromiumMissing, launchChromium, spkiPin, terminalLines, waitForLine } from './helpers/browser.ts'
import { AuthProcess, JSON_LOGS, ProxyProcess, ROOT, run, startNode, tempDir, testLogin, waitForNode } from './helpers/cluster.ts'
import { codeAt, stepNow } from './helpers/people.ts'

const PASSWORD = 'correct horse battery staple'

if (chromiumMissing()) t.plan(0, chromiumMissing() as string)
else await main()

async function main(): Promise<void> {
  t.setTimeout(120_000)
  const login = testLogin()
  const auth = await new AuthProcess().start()
  t.teardown(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, extraYaml: JSON_LOGS }).start()
  t.teardown(() => proxy.stop())

  const role = (name: string, env: string) =>
    run(join(ROOT, 'cli/warrenctl.ts'), ['create', '-f', '-', `--data-dir=${auth.dataDir}`], {
      input: `kind: role\nversion: v1\nmetadata:\n  name: ${name}\nspec:\n  allow:\n    logins: ['{{internal.logins}}']\n    node_labels:\n      env: ${env}\n`,
    })
  for (const [name, env] of [
    ['lab', 'lab'],
    ['prod', 'prod'],
  ]) {
    const created = await role(name, env)
    if (created.code !== 0) throw new Error(`create role ${name}: ${created.stderr}`)
  }

  /** A node labelled env=`env`, joined through the proxy: it keeps a tunnel. */
  async function node(name: string, env: string): Promise<void> {
    const dir = tempDir()
    const config = join(dir, 'warren.yaml')
    writeFileSync(config, ['version: v1', `data_dir: ${dir}`, `labels: { env: ${env} }`, 'ssh_service:', '  listen_addr: 127.0.0.1:0', JSON_LOGS].join('\n'))
    const daemon = startNode([`--config=${config}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, `--nodename=${name}`])
    t.teardown(() => daemon.stop())
    await waitForNode(auth, name)
  }
  await node('lab-1', 'lab')
  await node('prod-1', 'prod')

  const browser: Browser = await launchChromium([await spkiPin(proxy.web)])
  t.teardown(() => browser.close())
  const base = `https://${proxy.web}`

  /** A person as the test plays them: their TOTP secret and the last step whose code they used. */
  interface Person {
    name: string
    secret: string
    lastStep: number
  }

  /** `warrenctl users add`, then the invitation accepted in a fresh browser context. */
  async function invited(name: string, roles: string): Promise<{ person: Person; context: BrowserContext; page: Page }> {
    const added = await auth.ctl(['users', 'add', name, `--logins=${login}`, `--roles=${roles}`])
    const token = /--invite=(\S+)/.exec(added.stdout)?.[1]
    if (!token) throw new Error(`users add ${name}: ${added.stdout}${added.stderr}`)
    const context = await browser.newContext({ viewport: { width: 1100, height: 700 } })
    t.teardown(() => context.close())
    const page = await context.newPage()
    await page.goto(`${base}/web/invite/${token}`)
    const secret = (await page.textContent('#totp-secret', { timeout: 10_000 }))!.trim()
    const step = stepNow()
    await page.fill('#invite input[name=password]', PASSWORD)
    await page.fill('#invite input[name=again]', PASSWORD)
    await page.fill('#invite input[name=totp_code]', codeAt(secret, step))
    await page.click('#invite button[type=submit]')
    await page.waitForURL(`${base}/web/nodes`, { timeout: 10_000 })
    return { person: { name, secret, lastStep: step }, context, page }
  }

  /** The login page with a code of a step not used before (a used code is never taken twice). */
  async function logIn(page: Page, person: Person): Promise<void> {
    await page.goto(`${base}/web/login`)
    const step = Math.max(stepNow(), person.lastStep + 1)
    person.lastStep = step
    await page.fill('#login input[name=user]', person.name)
    await page.fill('#login input[name=password]', PASSWORD)
    await page.fill('#login input[name=totp_code]', codeAt(person.secret, step))
    await page.click('#login button[type=submit]')
    await page.waitForURL(`${base}/web/nodes`, { timeout: 10_000 })
  }

  /** The node names the Nodes page lists now. */
  const listedNodes = (page: Page) => page.$$eval('.node-name', (cells) => cells.map((cell) => cell.textContent))

  /** What GET /web/api/session answers this browser's cookie, from inside the page. */
  const sessionStatus = (page: Page) => page.evaluate(() => fetch('/web/api/session').then((response) => response.status))

  let erin: Person | undefined

  await t.test('an invited user accepts in the browser, logs in with a TOTP code, finds a node by label and works in its terminal', async (t) => {
    const { page, context, person } = await invited('bob', 'lab')
    t.equal(await page.textContent('header .who'), 'bobLog out', 'logged in as bob after the invitation')
    const [cookie] = (await context.cookies()).filter((c) => c.name === 'warren_session')
    t.match(cookie, { httpOnly: true, secure: true, sameSite: 'Strict', path: '/web' }, 'the session cookie')

    await page.click('button.logout')
    await page.waitForURL(`${base}/web/login`)
    t.equal(await sessionStatus(page), 401, 'logged out')
    await logIn(page, person)

    await page.fill('input[name=labels]', 'env=lab')
    t.same(await listedNodes(page), ['lab-1'], 'the label selector finds the node')
    await page.fill('input[name=labels]', 'env=*')
    t.same(await listedNodes(page), ['lab-1'], 'only the node the role allows')
    await page.fill('input[name=labels]', 'env=lab')
    await page.click(`a.button[href*="node=lab-1"][href*="login=${login}"]`)
    await page.waitForURL(/\/web\/terminal\?/)
    await page.locator('#terminal-state', { hasText: /^connected$/ }).waitFor({ timeout: 15_000 })

    // Typed at the shell's prompt, as a person would.
    await waitForLine(page, (line) => /^[$#]$/.test(line.trim()))
    await page.focus('#terminal .xterm-helper-textarea')
    await page.keyboard.type('echo $((6*7))\n')
    t.equal(await waitForLine(page, (line) => line === '42'), '42', 'the shell on the node answered')

    const before = await page.getAttribute('#terminal', 'data-size')
    await page.setViewportSize({ width: 800, height: 450 })
    await page.locator(`#terminal:not([data-size="${before}"])`).waitFor({ timeout: 10_000 })
    const size = (await page.getAttribute('#terminal', 'data-size'))!
    t.not(size, before, 'the terminal took the smaller window')
    await page.keyboard.type('stty size\n')
    t.equal(await waitForLine(page, (line) => /^\d+ \d+$/.test(line)), size, 'the node saw the new size')

    await page.keyboard.type('exit\n')
    await page.locator('#terminal-state', { hasText: /^session ended/ }).waitFor({ timeout: 10_000 })
    t.equal(await page.textContent('#terminal-state'), 'session ended (exit status 0)', 'the exit shown')

    await page.click('button.logout')
    await page.waitForURL(`${base}/web/login`)
    // The old cookie, put back, no longer opens a session: the logout ended it on the server.
    await context.addCookies([cookie])
    t.equal(await sessionStatus(page), 401, 'the logged-out session cookie is refused')
  })

  await t.test('a user whose roles do not allow a node neither sees it nor reaches it; another site cannot act with their session', async (t) => {
    const { page, context, person } = await invited('erin', 'editor,prod')
    erin = person
    t.same(await listedNodes(page), ['prod-1'], 'lab-1 is not listed')
    await page.goto(`${base}/web/terminal?node=lab-1&login=${login}`)
    await page.locator('#terminal-state.failed').waitFor({ timeout: 15_000 })
    t.notMatch((await terminalLines(page)).join('\n'), /\$|#/, 'no shell prompt from lab-1')

    // The same person's own page creates a token (so the refusal below is the check, not the route).
    const tokens = async () => (await auth.ctl(['tokens', 'ls', '--format=json'])).stdout
    await page.goto(`${base}/web/tokens`)
    await page.click('#token-form button[type=submit]')
    await page.waitForSelector('#token-created pre.command', { timeout: 10_000 })
    t.match(
      await page.textContent('#token-created pre.command'),
      /warren start \\\n {3}--roles=node \\\n {3}--token=- \\\n {3}--ca-pin=sha256:[0-9a-f]{64} \\\n/,
      'the join command',
    )
    const before = await tokens()

    // A page of another origin (http on 127.0.0.2) that posts a form to the console's API.
    const evil = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' })
      res.end(
        `<form id="f" method="POST" action="${base}/web/api/tokens" enctype="text/plain"><input name='{"roles":"node","ttl_ms":3600000,"single_use":false,"x":"' value='"}'></form><script>document.getElementById('f').submit()</script>`,
      )
    })
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.2', resolve))
    t.teardown(() => evil.close())
    const attacker = await context.newPage()
    const answered = attacker.waitForResponse(`${base}/web/api/tokens`, { timeout: 10_000 })
    await attacker.goto(`http://127.0.0.2:${(evil.address() as AddressInfo).port}/`)
    const answer = await answered
    t.ok(answer.status() === 401 || answer.status() === 403, `the cross-site POST is refused (${answer.status()})`)
    t.equal(await tokens(), before, 'and created no token')
  })

  await t.test(
    'the session of the first test is replayed from its recording in the browser',
    { todo: 'the proxy answers GET /web/api/recordings/ID with 500 (a path parameter it does not fill in)' },
    async (t) => {
      // erin (an editor) reads the recordings; bob's session is uploaded once it ended.
      const deadline = Date.now() + 30_000
      let recordings: RecordingJson[] = []
      while (Date.now() < deadline) {
        recordings = JSON.parse((await auth.ctl(['recordings', 'ls', '--format=json'])).stdout) as RecordingJson[]
        if (recordings.some((r) => r.user === 'bob' && r.complete)) break
        await new Promise((resolve) => setTimeout(resolve, 250))
      }
      const recording = recordings.find((r) => r.user === 'bob' && r.complete)
      t.ok(recording, "bob's session was recorded", { recordings })
      const context = await browser.newContext()
      t.teardown(() => context.close())
      const page = await context.newPage()
      await logIn(page, erin!)
      await page.goto(`${base}/web/recordings`)
      await page.click(`a.replay[href$="${recording!.session_id}"]`)
      await page.selectOption('#replay-speed', '8')
      t.equal(await waitForLine(page, (line) => line === '42', 30_000, '#replay'), '42', 'the replayed terminal shows the output')
    },
  )
}
