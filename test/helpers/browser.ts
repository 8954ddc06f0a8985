// Debian's chromium, headless, driven by playwright-core, for the web console's tests. The
// browser verifies the proxy's certificate by its public key: its SPKI pin is the one
// certificate error it may pass over (a name or an issuer it does not know), so a proxy
// presenting another key is refused, as a browser that trusts the cluster would refuse it.

import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { connect } from 'node:tls'
import { type Browser, chromium, type Page } from 'playwright-core'

export const CHROMIUM = '/usr/bin/chromium'

export const chromiumMissing = (): string | false => (existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (Debian's chromium)`)

/** The base64 SHA-256 of the SubjectPublicKeyInfo of the certificate served at `hostPort`. */
export function spkiPin(hostPort: string): Promise<string> {
  const at = hostPort.lastIndexOf(':')
  return new Promise((resolve, reject) => {
    // Only read here: the pin is what the browser is then told to trust.
    const socket = connect({ host: hostPort.slice(0, at), port: Number(hostPort.slice(at + 1)), rejectUnauthorized: false, servername: 'localhost' }, () => {
      const cert = socket.getPeerX509Certificate()
      socket.end()
      if (!cert) return reject(new Error(`no certificate at ${hostPort}`))
      resolve(
        createHash('sha256')
          .update(cert.publicKey.export({ type: 'spki', format: 'der' }))
          .digest('base64'),
      )
    })
    socket.once('error', reject)
  })
}

/** Headless chromium trusting the keys `pins` (spkiPin's) and no other unknown certificate. */
export function launchChromium(pins: string[]): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [`--ignore-certificate-errors-spki-list=${pins.join(',')}`],
    timeout: 30_000,
  })
}

/** The terminal's lines as the page shows them (xterm's rows), trailing blanks trimmed. */
export function terminalLines(page: Page, selector = '#terminal'): Promise<string[]> {
  return page.$$eval(`${selector} .xterm-rows > div`, (rows) => rows.map((row) => (row.textContent ?? '').replace(/\u00a0/g, ' ').trimEnd()))
}

/** Waits until the terminal shows a line for which `matches` holds; that line. */
export async function waitForLine(page: Page, matches: (line: string) => boolean, timeoutMs = 15_000, selector = '#terminal'): Promise<string> {
  const deadline = Date.now() + timeoutMs
  let lines: string[] = []
  while (Date.now() < deadline) {
    lines = await terminalLines(page, selector)
    const found = lines.find(matches)
    if (found !== undefined) return found
    await page.waitForTimeout(100)
  }
  throw new Error(`no such line in the terminal:\n${lines.join('\n')}`)
}
