// The console's calls to the proxy's /web/api/: JSON both ways, the session's CSRF token on
// every POST and DELETE, and a 401 (no valid session) sends the user to the login page.

export interface Session {
  user: string
  roles: string[]
  /** Whether the user may use the token and user pages. */
  editor: boolean
  /** The logins the roles allow on nodes. */
  logins: string[]
  csrf_token: string
  expires: string
}

let session: Session | null = null
let onLoggedOut: () => void = () => {}

export function currentSession(): Session | null {
  return session
}

export function setSession(next: Session | null): void {
  session = next
}

/** What to do when the server says the session is gone. */
export function whenLoggedOut(handler: () => void): void {
  onLoggedOut = handler
}

export class ApiFailure extends Error {
  readonly status: number
  constructor(status: number, message: string) {
    super(message)
    this.status = status
  }
}

/** `method path` under /web/api/, with a JSON body for POST; the answer's JSON (or text). */
export async function call<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' }
  if (method !== 'GET' && session) headers['x-csrf-token'] = session.csrf_token
  if (body !== undefined) headers['content-type'] = 'application/json'
  const response = await fetch(`/web/api/${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' })
  const text = await response.text()
  const json = (response.headers.get('content-type') ?? '').includes('application/json') && text !== '' ? JSON.parse(text) : undefined
  if (!response.ok) {
    if (response.status === 401 && session) {
      session = null
      onLoggedOut()
    }
    throw new ApiFailure(response.status, json?.error ?? `${response.status} ${response.statusText}`)
  }
  return (json ?? text) as T
}

/** The session of the cookie this browser holds, or null. */
export async function loadSession(): Promise<Session | null> {
  try {
    session = await call<Session>('GET', 'session')
  } catch (error) {
    if (!(error instanceof ApiFailure) || error.status !== 401) throw error
    session = null
  }
  return session
}
