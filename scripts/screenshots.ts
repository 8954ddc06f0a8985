// `npm run screenshots`: docs/images/web-nodes.png and docs/images/web-terminal.png, the
// web console's Nodes page and a terminal as README shows them, taken in headless chromium
// against a real cluster on this machine (the browser test's set-up), stopped afterwards.

import { join } from 'node:path'
import { waitForLine } from '../test/helpers/browser.ts'
import { ROOT } from '../test/helpers/cluster.ts'
import { startConsoleCluster } from '../test/helpers/console-cluster.ts'

const IMAGES = join(ROOT, 'docs/images')
const stops: (() => unknown)[] = []
try {
  const cluster = await startConsoleCluster((stop) => stops.push(stop))
  await cluster.node('gateway-berlin-1', { env: 'prod', site: 'berlin' })
  await cluster.node('gateway-berlin-2', { env: 'prod', site: 'berlin' })
  await cluster.node('sensor-lab-7', { env: 'lab', site: 'lyon' })
  const { page } = await cluster.invited('alice', 'access,editor', { width: 1280, height: 560 })
  await page.reload()
  await page.locator('.node-name').first().waitFor()
  await page.screenshot({ path: join(IMAGES, 'web-nodes.png') })
  console.log(`${join(IMAGES, 'web-nodes.png')}`)

  await page.click(`a.button[href*="node=gateway-berlin-1"][href*="login=${cluster.login}"]`)
  await waitForLine(page, (line) => /^[$#]$/.test(line.trim()))
  await page.focus('#terminal .xterm-helper-textarea')
  await page.keyboard.type('uname -sm; echo $((6*7)); stty size\n')
  await waitForLine(page, (line) => line === '42')
  await page.waitForTimeout(500)
  await page.screenshot({ path: join(IMAGES, 'web-terminal.png') })
  console.log(`${join(IMAGES, 'web-terminal.png')}`)
} finally {
  for (const stop of stops.reverse()) await stop()
}
