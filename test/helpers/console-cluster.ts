// A cluster for the web console in a real browser, shared by test/web-console.test.ts and
// scripts/screenshots.ts: an auth server, a proxy, nodes joined through it with labels,
// roles that allow nodes by label, and headless chromium trusting the proxy's key; people
// are invited with warrenctl and accept in the browser, with oathtool's TOTP codes.

import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { builtInCheckout } from '../../proxy/web-console/build.ts'
import { launchChromium, spkiPin } from './browser.ts'
import { AuthProcess, JSON_LOGS, ProxyProcess, ROOT, run, startNode, tempDir, testLogin, waitForNode } from './cluster.ts'
import { codeAt, stepNow } from './people.ts'

export const PASSWORD = 'correct horse battery staple'

/** A person as a test plays them: their TOTP secret and the last step whose code they used. */
export interface Person {
  name: string
  secret: string
  lastStep: number
}

export interface ConsoleCluster {
  auth: AuthProcess
  proxy: ProxyProcess
  browser: Browser
  /** https://PROXY */
  base: string
  /** The OS login the nodes' sessions use. */
  login: string
  /** A node labelled `labels`, joined through the proxy (it keeps a tunnel). */
  node(name: string, labels: Record<string, string>): Promise<void>
  /** A role allowing the nodes with `labels`, as the user's own logins. */
  role(name: string, labels: Record<string, string>): Promise<void>
  /** `warrenctl users add`, then the invitation accepted in a fresh browser context. */
  invited(name: string, roles: string, viewport?: { width: number; height: number }): Promise<{ person: Person; context: BrowserContext; page: Page }>
  /** The login page with a code of a step not used before (a used code is never taken twice). */
  logIn(page: Page, person: Person): Promise<void>
}

/** Starts it all; `cleanup` is handed what to stop, in the order started. */
export async function startConsoleCluster(cleanup: (stop: () => unknown) => void): Promise<ConsoleCluster> {
  await builtInCheckout()
  const login = testLogin()
  const auth = await new AuthProcess().start()
  cleanup(() => auth.stop())
  const pin = await auth.pin()
  const proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, extraYaml: JSON_LOGS }).start()
  cleanup(() => proxy.stop())
  const browser = await launchChromium([await spkiPin(proxy.web)])
  cleanup(() => browser.close())
  const base = `https://${proxy.web}`
  const yamlMap = (labels: Record<string, string>) =>
    `{ ${Object.entries(labels)
      .map(([key, value]) => `${key}: ${value}`)
      .join(', ')} }`

  return {
    auth,
    proxy,
    browser,
    base,
    login,
    async node(name, labels) {
      const dir = tempDir()
      const config = join(dir, 'warren.yaml')
      writeFileSync(config, ['version: v1', `data_dir: ${dir}`, `labels: ${yamlMap(labels)}`, 'ssh_service:', '  listen_addr: 127.0.0.1:0', JSON_LOGS].join('\n'))
      const daemon = startNode([`--config=${config}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, `--nodename=${name}`])
      cleanup(() => daemon.stop())
      await waitForNode(auth, name)
    },
    async role(name, labels) {
      const input = `kind: role\nversion: v1\nmetadata:\n  name: ${name}\nspec:\n  allow:\n    logins: ['{{internal.logins}}']\n    node_labels: ${yamlMap(labels)}\n`
      const created = await run(join(ROOT, 'cli/warrenctl.ts'), ['create', '-f', '-', `--data-dir=${auth.dataDir}`], { input })
      if (created.code !== 0) throw new Error(`create role ${name}: ${created.stderr}`)
    },
    async invited(name, roles, viewport = { width: 1100, height: 700 }) {
      const added = await auth.ctl(['users', 'add', name, `--logins=${login}`, `--roles=${roles}`])
      const token = /--invite=(\S+)/.exec(added.stdout)?.[1]
      if (!token) throw new Error(`users add ${name}: ${added.stdout}${added.stderr}`)
      const context = await browser.newContext({ viewport })
      cleanup(() => context.close())
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
    },
    async logIn(page, person) {
      await page.goto(`${base}/web/login`)
      // Each code logs in once, and the server takes the next window's at the most: after a
      // login in the next window already, wait for the clock to reach it.
      while (person.lastStep > stepNow()) await new Promise((resolve) => setTimeout(resolve, 500))
      const step = Math.max(stepNow(), person.lastStep + 1)
      person.lastStep = step
      await page.fill('#login input[name=user]', person.name)
      await page.fill('#login input[name=password]', PASSWORD)
      await page.fill('#login input[name=totp_code]', codeAt(person.secret, step))
      await page.click('#login button[type=submit]')
      await page.waitForURL(`${base}/web/nodes`, { timeout: 10_000 })
    },
  }
}
