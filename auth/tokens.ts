// Join tokens. Only a SHA-256 hash of each token is stored, keyed by that hash; the short
// ID shown by `tokens ls` is the hash's first 12 hex digits, so listing never reveals a
// secret. Static tokens come from the auth server's config and live only in memory.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { MIN_TOKEN_LENGTH } from '../shared/config.ts'
import type { Backend, Condition, Operation } from './backend/backend.ts'
import { isTokenRole, type TokenRole } from './roles.ts'

const PREFIX = '/tokens/'
const ID_LENGTH = 12

export interface TokenRecord {
  id: string
  roles: TokenRole[]
  /** Epoch ms; undefined for static tokens, which never expire. */
  expires?: number
  singleUse: boolean
  static: boolean
  created?: number
  /**
   * The node name a join with this token must use. Such a token also replaces the node
   * that holds the name: how an admin replaces a dead device on purpose.
   */
  nodename?: string
  /** A sign-up token's user (`warrenctl users add`), who sets a password and a second factor with it. */
  user?: string
  /** Labels the cluster assigns to each node that joins with it (auth/assigned-labels.ts). */
  labels?: Record<string, string>
}

/** What a successful validation hands back: enough to consume a single-use token atomically. */
export interface ValidToken {
  record: TokenRecord
  /** Conditions (the token is still as read) and operations (a single-use token is spent) for the join's transaction. */
  consume: { conditions: Condition[]; operations: Operation[] }
}

/** A refusal that is safe to show to the joining party: it never contains the token. */
export class TokenRefusal extends Error {}

/** A token that cannot be made or deleted as asked (a value too short, a static token). */
export class TokenError extends Error {}

/** No token has that value or ID (it may have expired). */
export class TokenNotFound extends TokenError {}

export const TOKEN_NOT_FOUND = 'token expired or not found'

interface StaticToken {
  hash: Buffer
  record: TokenRecord
  value: string
}

export function hashToken(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest()
}

export function tokenId(value: string): string {
  return hashToken(value).toString('hex').slice(0, ID_LENGTH)
}

/** 128 bits from the CSPRNG, as 32 hex digits (easy to copy, safe in a shell). */
export function generateToken(): string {
  return randomBytes(16).toString('hex')
}

/** A static token of auth_service.tokens, once its value is read: what TokenService takes. */
export interface StaticTokenSpec {
  roles: TokenRole[]
  value: string
  /** Assigned to each node that joins with it, as a dynamic token's (auth/assigned-labels.ts). */
  labels?: Record<string, string>
}

/** The long form of a static token entry (shared/config-schema.ts). */
export interface StaticTokenEntry {
  roles: string[]
  token: string
  labels: Record<string, string>
}

/**
 * Parses a static token entry, "proxy,node:VALUE" or { roles, token, labels }, whose value
 * `resolve` reads (from its file, when it starts with /). Errors never hold the value.
 */
export function parseStaticToken(entry: string | StaticTokenEntry, resolve: (value: string) => string): StaticTokenSpec {
  let roles: string[]
  let source: string
  let labels: Record<string, string> = {}
  if (typeof entry === 'string') {
    const colon = entry.indexOf(':')
    if (colon <= 0) throw new Error('a static token must look like "node,proxy:VALUE" or "node:/path/to/file"')
    roles = entry.slice(0, colon).split(',')
    source = entry.slice(colon + 1)
  } else {
    ;({ roles, token: source, labels } = entry)
  }
  roles = roles.map((r) => r.trim().toLowerCase())
  for (const role of roles) {
    if (!isTokenRole(role)) throw new Error(`a static token names an unknown role "${role}"`)
  }
  const assigns = Object.keys(labels).length > 0
  if (assigns && !roles.includes('node')) {
    throw new Error('a static token with labels assigns them to the nodes that join with it, so its roles must include node')
  }
  source = source.trim()
  const value = resolve(source)
  if (value.length === 0) throw new Error('a static token has an empty value')
  if (value.length < MIN_TOKEN_LENGTH) {
    throw new Error(`${source.startsWith('/') ? `the token in ${source}` : 'the token'} is shorter than ${MIN_TOKEN_LENGTH} characters, which could be guessed`)
  }
  return { roles: roles as TokenRole[], value, ...(assigns ? { labels } : {}) }
}

export interface TokenOptions {
  roles: TokenRole[]
  ttlMs: number
  singleUse?: boolean
  value?: string
  nodename?: string
  user?: string
  labels?: Record<string, string>
}

export class TokenService {
  private readonly backend: Backend
  private readonly staticTokens: StaticToken[]
  private readonly clock: () => number

  constructor(backend: Backend, staticTokens: StaticTokenSpec[], clock: () => number = Date.now) {
    this.backend = backend
    this.clock = clock
    this.staticTokens = staticTokens.map(({ roles, value, labels }) => ({
      hash: hashToken(value),
      value,
      record: { id: tokenId(value), roles, singleUse: false, static: true, ...(labels ? { labels } : {}) },
    }))
  }

  async add(options: TokenOptions): Promise<{ value: string; record: TokenRecord }> {
    const { value, record, condition, operation } = this.prepare(options)
    if (!(await this.backend.txn([condition], [operation]))) throw new TokenError('a token with this value already exists')
    return { value, record }
  }

  /** A new token's value and record, and the write that stores it, for a caller's transaction (which must hold `condition`). */
  prepare(options: TokenOptions): { value: string; record: TokenRecord; condition: Condition; operation: Operation } {
    const value = options.value ?? generateToken()
    if (value.length < MIN_TOKEN_LENGTH) throw new TokenError(`a token must be at least ${MIN_TOKEN_LENGTH} characters long`)
    if (/\s/.test(value) || value.startsWith('/')) throw new TokenError('a token must not contain spaces or start with "/"')
    const hash = hashToken(value)
    if (this.findStatic(hash)) throw new TokenError('this token value is already defined as a static token')
    const now = this.clock()
    const record: TokenRecord = {
      id: hash.toString('hex').slice(0, ID_LENGTH),
      roles: options.roles,
      expires: now + options.ttlMs,
      // Replacing a device is done once, and so is signing up: such tokens are always single-use.
      singleUse: (options.singleUse ?? false) || options.nodename !== undefined || options.user !== undefined,
      static: false,
      created: now,
      ...(options.nodename === undefined ? {} : { nodename: options.nodename }),
      ...(options.user === undefined ? {} : { user: options.user }),
      ...(options.labels === undefined || Object.keys(options.labels).length === 0 ? {} : { labels: options.labels }),
    }
    const key = PREFIX + hash.toString('hex')
    return { value, record, condition: { key, absent: true }, operation: { op: 'put', key, value: JSON.stringify(record), ttlMs: options.ttlMs } }
  }

  /**
   * Checks a presented token for the requested roles (and, for a token made for one node
   * name, that name). Throws TokenRefusal with a reason
   * that never includes the token. Nothing is consumed here: the caller applies `consume`
   * in the same transaction that registers the node, which then fails if the token was
   * removed, spent or expired meanwhile.
   */
  async validate(value: string, requestedRoles: TokenRole[], nodename?: string): Promise<ValidToken> {
    const hash = hashToken(value)
    let record: TokenRecord | undefined
    const consume: ValidToken['consume'] = { conditions: [], operations: [] }
    const fromStatic = this.findStatic(hash)
    if (fromStatic) {
      record = fromStatic.record
    } else {
      const key = PREFIX + hash.toString('hex')
      const item = await this.backend.get(key)
      if (item) {
        const stored = JSON.parse(item.value) as TokenRecord
        // The lookup is by hash; compare the full hash in constant time all the same.
        if (timingSafeEqual(Buffer.from(key.slice(PREFIX.length), 'hex'), hash) && (stored.expires ?? Infinity) > this.clock()) {
          record = stored
          // Every use is conditional on the token as read: one removed (or expired, or spent
          // by a racing join) before the transaction commits admits nothing.
          consume.conditions.push({ key, revision: item.revision })
          if (stored.singleUse) consume.operations.push({ op: 'delete', key })
        }
      }
    }
    if (!record) throw new TokenRefusal(TOKEN_NOT_FOUND)
    for (const role of requestedRoles) {
      if (!record.roles.includes(role)) throw new TokenRefusal(`the token does not allow "${role}" role`)
    }
    if (record.nodename !== undefined && record.nodename !== nodename) throw new TokenRefusal(`the token is for node "${record.nodename}"`)
    return { record, consume }
  }

  async list(): Promise<(TokenRecord & { value?: string })[]> {
    const now = this.clock()
    const dynamic = (await this.backend.list(PREFIX)).map((item) => JSON.parse(item.value) as TokenRecord).filter((record) => (record.expires ?? Infinity) > now)
    const statics = this.staticTokens.map((token) => ({ ...token.record, value: token.value }))
    return [...statics, ...dynamic]
  }

  /** Deletes a dynamic token given its value or its listed ID. */
  async remove(valueOrId: string): Promise<TokenRecord> {
    const byValue = hashToken(valueOrId)
    if (this.findStatic(byValue) || this.staticTokens.some((t) => t.record.id === valueOrId)) {
      throw new TokenError("this is a static token from the auth server's config (auth_service.tokens): remove it there and restart")
    }
    let key = PREFIX + byValue.toString('hex')
    let item = await this.backend.get(key)
    if (!item && /^[0-9a-f]{12}$/.test(valueOrId)) {
      item = (await this.backend.list(PREFIX + valueOrId))[0]
      if (item) key = item.key
    }
    if (!item || !(await this.backend.delete(key))) throw new TokenNotFound('token not found (it may have expired or been deleted)')
    return JSON.parse(item.value) as TokenRecord
  }

  /** Compares against every static token, so timing does not reveal which one matched. */
  private findStatic(hash: Buffer): StaticToken | undefined {
    let found: StaticToken | undefined
    for (const token of this.staticTokens) {
      if (timingSafeEqual(token.hash, hash) && !found) found = token
    }
    return found
  }
}
