// The web console in a real browser: Debian's chromium, headless, driven by
// playwright-core, against a real auth server, proxy and tunnelled nodes. The browser
// verifies the proxy's certificate by its key (helpers/browser.ts). A person invited with
// warrenctl accepts the invitation in the browser (the TOTP code from oathtool), logs in,
// finds a node by label and works in a terminal to it (typing, copy and paste, resizing); a
// person whose roles do not allow that node neither sees it nor reaches it, and a page of
// another site cannot make changes with their session, while that editor's own pages create
// a token, invite a user and read the audit log; the session just seen is replayed from its
// recording in the browser.

import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Page } from 'playwright-core'
import t from 'tap'
import type { RecordingJson } from '../shared/protocol/recordings.ts'
import { chromiumMissing, terminalLines, waitForLine } from './helpers/browser.ts'
import { type Person, startConsoleCluster } from './helpers/console-cluster.ts'

if (chromiumMissing()) t.plan(0, chromiumMissing() as string)
else await main()

async function main(): Promise<void> {
  t.setTimeout(120_000)
  const { auth, browser, base, login, node, role, invited, logIn } = await startConsoleCluster((stop) => t.teardown(stop))
  await role('lab', { env: 'lab' })
  await role('prod', { env: 'prod' })
  await node('lab-1', { env: 'lab' })
  await node('prod-1', { env: 'prod' })

  /** The node names the Nodes page lists now. */
  const listedNodes = async (page: Page) => {
    // The list is drawn once the page has the nodes: a row, or the line that says none match.
    await page.locator('main .list .node-name, main .list .empty').first().waitFor({ timeout: 10_000 })
    return page.$$eval('.node-name', (cells) => cells.map((cell) => cell.textContent))
  }

  /** What GET /web/api/session answers this browser's cookie, from inside the page. */
  const sessionStatus = (page: Page) => page.evaluate(() => fetch('/web/api/session').then((response) => response.status))

  let erin: Person | undefined
  /** The terminal's size after the first test's resize, as `stty size` printed it. */
  let resized = ''

  await t.test('an invited user accepts in the browser, logs in with a TOTP code, finds a node by label and works in its terminal', async (t) => {
    const { page, context, person } = await invited('bob', 'lab')
    t.equal(await page.textContent('header .who'), 'bobLog out', 'logged in as bob after the invitation')
    const [cookie] = (await context.cookies()).filter((c) => c.name === '__Host-warren_session')
    t.match(cookie, { httpOnly: true, secure: true, sameSite: 'Strict', path: '/' }, 'the session cookie')

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

    // Copy on select: a double click on the answer selects it, and the clipboard then holds it.
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base })
    // The rows are text under xterm's own layer, which takes the mouse: click where the answer is.
    const answer = (await page
      .locator('#terminal .xterm-rows > div')
      .filter({ hasText: /^42\s*$/ })
      .first()
      .boundingBox())!
    await page.mouse.dblclick(answer.x + 4, answer.y + answer.height / 2)
    t.equal(await page.evaluate('navigator.clipboard.readText()'), '42', 'the selected answer was copied to the clipboard')
    // Paste: the browser's paste event on the terminal, as Ctrl+V or the context menu fire it.
    // (Run in the page, whose DOM these tests' TypeScript does not describe.)
    await page.evaluate(`{
      const data = new DataTransfer()
      data.setData('text/plain', ${JSON.stringify('echo pasted-$((40+2))')})
      const paste = new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true })
      document.querySelector('#terminal .xterm-helper-textarea').dispatchEvent(paste)
    }`)
    await page.focus('#terminal .xterm-helper-textarea')
    await page.keyboard.press('Enter')
    t.equal(await waitForLine(page, (line) => line === 'pasted-42'), 'pasted-42', 'the pasted command ran on the node')

    const before = await page.getAttribute('#terminal', 'data-size')
    await page.setViewportSize({ width: 800, height: 450 })
    await page.locator(`#terminal:not([data-size="${before}"])`).waitFor({ timeout: 10_000 })
    const size = (await page.getAttribute('#terminal', 'data-size'))!
    t.not(size, before, 'the terminal took the smaller window')
    await page.keyboard.type('stty size\n')
    t.equal(await waitForLine(page, (line) => /^\d+ \d+$/.test(line)), size, 'the node saw the new size')
    resized = size

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
    // Opened by address, as another site's link would open it: nothing connects until asked.
    await page.goto(`${base}/web/terminal?node=lab-1&login=${login}`)
    await page.locator('#terminal-confirm').waitFor({ timeout: 10_000 })
    t.equal(await page.locator('#terminal').count(), 0, 'no terminal opens without a click')
    await page.click('#terminal-open')
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

    // The Users page invites: the URL it shows opens the invitation.
    await page.goto(`${base}/web/users`)
    await page.fill('#user-form input[name=name]', 'frank')
    await page.fill('#user-form input[name=roles]', 'prod')
    await page.fill('#user-form input[name=logins]', login)
    await page.click('#user-form button[type=submit]')
    const url = (await page.textContent('#invite-url', { timeout: 10_000 }))!
    t.match(url, new RegExp(`^${base}/web/invite/\\S+$`), 'the invitation URL')
    const invitee = await context.newPage()
    await invitee.goto(url)
    t.equal(await invitee.textContent('#invite-user', { timeout: 10_000 }), 'frank', 'the URL opens the invitation')

    // The Audit page, filtered, shows bob's session of the first test (once the node sent it).
    let rows: string[] = []
    for (const deadline = Date.now() + 20_000; Date.now() < deadline; await page.waitForTimeout(250)) {
      await page.goto(`${base}/web/audit?type=session.*&user=bob`)
      await page.locator('main .list table, main .list .empty').first().waitFor({ timeout: 10_000 })
      rows = await page.$$eval('main tbody tr', (trs) => trs.map((tr) => Array.from(tr.children, (td) => (td as { textContent: string | null }).textContent).join(' | ')))
      if (rows.some((row) => row.includes('session.end'))) break
    }
    t.ok(
      rows.some((row) => / \| session\.start \| bob \| lab-1 \| /.test(row)),
      'the session started',
      { rows },
    )
    t.ok(
      rows.every((row) => / \| session\.(start|end) \| bob \| /.test(row)),
      'only what the filters ask for',
      { rows },
    )
  })

  await t.test('the session of the first test is replayed from its recording in the browser', async (t) => {
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
    await page.locator('[data-replay="ended"]').waitFor({ timeout: 30_000 })
    const rows = await page.$$eval('#replay .xterm-rows > div', (lines) => lines.length)
    t.equal(rows, Number(resized.split(' ')[0]), 'the replay took the recorded size change')
  })

  await t.test("an editor's pages revoke a token, and reset and remove a user", async (t) => {
    const context = await browser.newContext()
    t.teardown(() => context.close())
    const page = await context.newPage()
    page.on('dialog', (dialog) => dialog.accept())
    await logIn(page, erin!)
    const nodeTokens = async () => (JSON.parse((await auth.ctl(['tokens', 'ls', 'type=node', '--format=json'])).stdout) as { id: string }[]).map((token) => token.id).sort()
    const before = await nodeTokens()
    await page.goto(`${base}/web/tokens`)
    const row = page.locator('main tbody tr', { hasText: before[0] })
    await row.locator('button', { hasText: 'Revoke' }).click()
    await row.waitFor({ state: 'detached', timeout: 10_000 })
    t.same(await nodeTokens(), before.slice(1), 'the token is revoked')

    await page.goto(`${base}/web/users`)
    const frank = page.locator('main tbody tr', { hasText: 'frank' })
    await frank.locator('button', { hasText: 'Reset' }).click()
    t.match(await page.textContent('#invite-url', { timeout: 10_000 }), new RegExp(`^${base}/web/invite/\\S+$`), 'a new invitation URL')
    await frank.locator('button', { hasText: 'Remove' }).click()
    await frank.waitFor({ state: 'detached', timeout: 10_000 })
    t.notMatch((await auth.ctl(['users', 'ls'])).stdout, /^frank /m, 'the user is removed')
  })
}
