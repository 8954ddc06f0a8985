// Where a node's tunnels go, remembered from the proxy's discovery answer, so that a node
// restarted with its identity on disk dials its tunnels at once: no HTTPS call, and no
// HTTP client in the process, whose memory counts against a device's budget (see
// bench:footprint). The agent asks again when tunnels to the remembered address keep failing.

import { existsSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { writeFileAtomic } from '../shared/files.ts'

const FILE = 'tunnel-address.json'

export interface TunnelAddress {
  host: string
  port: number
}

/** The address remembered for tunnels through `server` (the web address joined through), if any. */
export function rememberedTunnelAddress(dataDir: string, server: string): TunnelAddress | undefined {
  const path = join(dataDir, FILE)
  if (!existsSync(path)) return undefined
  try {
    const saved = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>
    const valid =
      saved.server === server && typeof saved.host === 'string' && saved.host !== '' && Number.isInteger(saved.port) && (saved.port as number) > 0 && (saved.port as number) < 65536
    return valid ? { host: saved.host as string, port: saved.port as number } : undefined
  } catch {
    return undefined // unreadable: discovery answers again and the file is rewritten
  }
}

export function rememberTunnelAddress(dataDir: string, server: string, address: TunnelAddress): void {
  writeFileAtomic(join(dataDir, FILE), JSON.stringify({ server, host: address.host, port: address.port }) + '\n', 0o644)
}

/** For a node that no longer goes through a proxy (its server answers as an auth server). */
export function forgetTunnelAddress(dataDir: string): void {
  rmSync(join(dataDir, FILE), { force: true })
}
