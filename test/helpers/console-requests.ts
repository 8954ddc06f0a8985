// Requests to a proxy's web console API as its own pages make them, for tests that play the
// browser's part by hand (test/web-console-api.test.ts, test/web-console-session.test.ts).

import { request } from 'node:https'

export interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Record<string, unknown>
  text: string
}

/** One request to a proxy's web port, as a page of the console (same Origin) unless told otherwise. */
export function web(proxy: string, method: string, path: string, options: { body?: unknown; cookie?: string; csrf?: string; origin?: string | null } = {}): Promise<Answer> {
  const headers: Record<string, string> = {}
  const origin = options.origin === undefined ? `https://${proxy}` : options.origin
  if (origin !== null) headers.origin = origin
  if (options.cookie) headers.cookie = options.cookie
  if (options.csrf) headers['x-csrf-token'] = options.csrf
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body)
  if (payload !== undefined) headers['content-type'] = 'application/json'
  return new Promise((resolve, reject) => {
    const req = request(`https://${proxy}${path}`, { method, headers, rejectUnauthorized: false }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk) => (text += chunk))
      res.on('end', () => {
        let body: Record<string, unknown> = {}
        try {
          body = JSON.parse(text)
        } catch {}
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text })
      })
    })
    req.on('error', reject)
    req.end(payload)
  })
}
