// Addresses as Warren writes them in configs, flags and API answers: `host:port`, with an
// IPv6 host in brackets, and the port left out where a default applies.

import { isIP } from 'node:net'
import { UsageError } from './errors.ts'

/** `host`, `host:3025`, `[::1]:3025`, `::1`; the port is undefined when not written. */
export function splitHostPort(text: string): { host: string; port?: number } {
  const value = text.trim()
  const bad = () => new UsageError(`invalid address ${JSON.stringify(text)}: use host:port, e.g. auth.example.com:3025`)
  let host: string
  let portText: string | undefined
  if (value.startsWith('[')) {
    const end = value.indexOf(']')
    if (end === -1) throw bad()
    host = value.slice(1, end)
    const rest = value.slice(end + 1)
    if (rest !== '' && !rest.startsWith(':')) throw bad()
    portText = rest === '' ? undefined : rest.slice(1)
    if (isIP(host) !== 6) throw bad()
  } else {
    const colons = value.split(':').length - 1
    if (colons > 1) {
      // A bare IPv6 address has no room for a port; anything else with colons (a URL) is wrong.
      if (isIP(value) !== 6) throw bad()
      host = value
    } else {
      ;[host, portText] = value.split(':')
    }
  }
  if (host === '' || /[\s/@]/.test(host)) throw bad()
  if (portText === undefined) return { host }
  // Port 0 is allowed: a listener on port 0 gets a free port, which tests rely on.
  const port = Number(portText)
  if (!/^\d{1,5}$/.test(portText) || port > 65535) {
    throw new UsageError(`invalid port ${JSON.stringify(portText)} in ${JSON.stringify(text)}: use a number from 0 to 65535`)
  }
  return { host, port }
}

export function parseHostPort(text: string, defaultPort: number): { host: string; port: number } {
  const { host, port } = splitHostPort(text)
  return { host, port: port ?? defaultPort }
}

/** The inverse of splitHostPort: an IPv6 host in brackets. */
export function joinHostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`
}
