// The HTTPS side of talking to an ACME server. acme-client sends every request through one
// axios instance for the whole process, so trust is added per origin: requests to a
// directory's origin go through an https.Agent that trusts the system roots plus the extra
// root given for it (Pebble's test CA, a private ACME server's CA); other origins are untouched.
// The directory is fetched once up front so that an unreachable, untrusted or wrong URL fails
// at once with a message saying which, rather than after acme-client's retries.

import { Agent, get } from 'node:https'
import { rootCertificates } from 'node:tls'
import acme from 'acme-client'
import { AcmeError } from './errors.ts'

const agents = new Map<string, Agent>()
let routing = false

/** Trusts `caBundle` (PEM, one or more roots) for the directory's origin; the result undoes it. */
export function trustAcmeServer(directoryUrl: string, caBundle: string): { agent: Agent; release: () => void } {
  const origin = new URL(directoryUrl).origin
  const agent = new Agent({ ca: [...rootCertificates, caBundle] })
  agents.set(origin, agent)
  if (!routing) {
    acme.axios.interceptors.request.use((config) => {
      const chosen = config.url ? agents.get(originOf(config.url)) : undefined
      if (chosen) config.httpsAgent = chosen
      return config
    })
    routing = true
  }
  return {
    agent,
    release: () => {
      if (agents.get(origin) === agent) agents.delete(origin)
      agent.destroy()
    },
  }
}

export const DIRECTORY_TIMEOUT_MS = 15_000

/** Fetches the directory and checks it is one; throws an AcmeError saying what is wrong. */
export async function checkDirectory(directoryUrl: string, agent?: Agent, timeoutMs = DIRECTORY_TIMEOUT_MS): Promise<void> {
  let url: URL
  try {
    url = new URL(directoryUrl)
  } catch {
    throw new AcmeError(`ACME directory URL is not a URL: ${JSON.stringify(directoryUrl)}`)
  }
  if (url.protocol !== 'https:') throw new AcmeError(`ACME directory URL must use https: ${directoryUrl}`)
  const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const request = get(url, { agent, timeout: timeoutMs, headers: { accept: 'application/json' } }, (response) => {
      let text = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => {
        if (text.length < 1_000_000) text += chunk
      })
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text }))
      response.on('error', reject)
    })
    request.on('timeout', () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)))
    request.on('error', reject)
  }).catch((error: NodeJS.ErrnoException) => {
    if (isCertificateError(error)) {
      throw new AcmeError(
        `the ACME server ${url.origin} presented a certificate that is not trusted (${error.message}); ` + 'for a private or test ACME server, give its CA as caBundle',
      )
    }
    throw new AcmeError(`the ACME directory ${directoryUrl} is unreachable: ${error.message}`)
  })
  if (status !== 200) throw new AcmeError(`the ACME directory ${directoryUrl} answered HTTP ${status}`)
  let directory: Record<string, unknown>
  try {
    directory = JSON.parse(body) as Record<string, unknown>
  } catch {
    throw new AcmeError(`${directoryUrl} is not an ACME directory: the answer is not JSON`)
  }
  const missing = ['newNonce', 'newAccount', 'newOrder'].filter((name) => typeof directory?.[name] !== 'string')
  if (missing.length) throw new AcmeError(`${directoryUrl} is not an ACME directory: it lacks ${missing.join(', ')}`)
}

function originOf(url: string): string {
  try {
    return new URL(url).origin
  } catch {
    return ''
  }
}

// OpenSSL's verification codes as Node reports them, and Node's own host name check.
function isCertificateError(error: NodeJS.ErrnoException): boolean {
  const code = error.code ?? ''
  return code === 'ERR_TLS_CERT_ALTNAME_INVALID' || /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)/.test(code)
}
