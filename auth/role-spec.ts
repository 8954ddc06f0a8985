// The role resource as an admin writes it (`warrenctl create -f role.yaml`), close to
// Teleport's: what a role allows and denies its users. Read strictly, field by field, so
// that a misspelt key is an error naming it instead of a rule silently missing.

import { WILDCARD } from '../shared/access.ts'
import { parseDuration } from '../shared/duration.ts'
import { labelKeyProblem, labelValueProblem } from '../shared/labels.ts'
import type { RoleJson, RoleRules } from '../shared/protocol/roles.ts'
import { closest, didYouMean } from '../shared/suggest.ts'
import { MAX_USER_CERT_TTL_MS, UserError } from './users.ts'

/** The largest max_sessions or max_connections a role may set: more is no limit at all. */
const MAX_LIMIT = 10_000

/** In `logins`: the logins given to the user (`warrenctl users add --logins`). */
export const INTERNAL_LOGINS = '{{internal.logins}}'
const NAME = /^[a-z_][a-z0-9_.-]{0,31}$/
const PORT_NAME = /^[A-Za-z0-9_.-]{1,64}$/
const MAX_ITEMS = 64

export type Role = RoleJson
export type { RoleRules }

/** A role resource that cannot be read as it is. */
export class RoleError extends UserError {}

export function validateRoleName(name: string): void {
  if (!NAME.test(name)) throw new RoleError(`invalid role name "${name}": use lowercase letters, digits, "_", "-" or ".", starting with a letter or "_", at most 32 characters`)
}

/** The role in `value` (the parsed YAML or JSON), or a RoleError naming the first field at fault. */
export function parseRole(value: unknown): Role {
  const top = record(value, 'the role', ['kind', 'version', 'metadata', 'spec'])
  if (top.kind !== 'role') throw new RoleError(`kind: must be "role", not ${JSON.stringify(top.kind)}`)
  if (top.version !== 'v1') throw new RoleError(`version: must be "v1", not ${JSON.stringify(top.version)}`)
  const metadata = record(top.metadata, 'metadata', ['name', 'description'])
  if (typeof metadata.name !== 'string') throw new RoleError('metadata.name: a role needs a name')
  validateRoleName(metadata.name)
  if (metadata.description !== undefined && (typeof metadata.description !== 'string' || metadata.description.length > 256 || /[\u0000-\u001f]/.test(metadata.description))) {
    throw new RoleError('metadata.description: must be one line of text, at most 256 characters')
  }
  const spec = record(top.spec ?? {}, 'spec', ['allow', 'deny', 'options'])
  const options = record(spec.options ?? {}, 'spec.options', ['max_session_ttl', 'port_forwarding', 'forward_agent', 'max_sessions', 'max_connections'])
  let maxSessionTtl: string | undefined
  if (options.max_session_ttl !== undefined) {
    if (typeof options.max_session_ttl !== 'string') throw new RoleError('spec.options.max_session_ttl: must be a duration such as 8h or 30m')
    let ms: number
    try {
      ms = parseDuration(options.max_session_ttl)
    } catch (error) {
      throw new RoleError(`spec.options.max_session_ttl: ${(error as Error).message}`)
    }
    if (ms > MAX_USER_CERT_TTL_MS) throw new RoleError(`spec.options.max_session_ttl: at most ${MAX_USER_CERT_TTL_MS / 3_600_000}h; user certificates are short-lived`)
    maxSessionTtl = options.max_session_ttl
  }
  for (const name of ['port_forwarding', 'forward_agent']) {
    if (options[name] !== undefined && typeof options[name] !== 'boolean') throw new RoleError(`spec.options.${name}: must be true or false`)
  }
  for (const name of ['max_sessions', 'max_connections']) {
    const limit = options[name]
    if (limit !== undefined && (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT))
      throw new RoleError(`spec.options.${name}: must be a whole number from 1 to ${MAX_LIMIT}`)
  }
  const roleOptions: Role['spec']['options'] = {}
  if (maxSessionTtl !== undefined) roleOptions.max_session_ttl = maxSessionTtl
  if (options.port_forwarding !== undefined) roleOptions.port_forwarding = options.port_forwarding as boolean
  if (options.forward_agent !== undefined) roleOptions.forward_agent = options.forward_agent as boolean
  if (options.max_sessions !== undefined) roleOptions.max_sessions = options.max_sessions as number
  if (options.max_connections !== undefined) roleOptions.max_connections = options.max_connections as number
  return {
    kind: 'role',
    version: 'v1',
    metadata: { name: metadata.name, ...(metadata.description === undefined ? {} : { description: metadata.description as string }) },
    spec: { allow: rules(spec.allow, 'spec.allow'), deny: rules(spec.deny, 'spec.deny'), options: roleOptions },
  }
}

function rules(value: unknown, where: string): RoleRules {
  const section = record(value ?? {}, where, ['logins', 'node_labels', 'ports', 'admin'])
  const result: RoleRules = {}
  if (section.logins !== undefined) {
    result.logins = strings(section.logins, `${where}.logins`, (login) => {
      // Logins are granted by name: "*" only denies them all.
      if (login === WILDCARD) return where === 'spec.deny' ? undefined : '"*" only denies every login; allow logins by name'
      if (login === INTERNAL_LOGINS) return undefined
      return NAME.test(login) ? undefined : `"${login}" is not a login name (nor ${INTERNAL_LOGINS})`
    })
  }
  if (section.node_labels !== undefined) result.node_labels = labels(section.node_labels, `${where}.node_labels`)
  if (section.ports !== undefined) {
    result.ports = strings(section.ports, `${where}.ports`, (name) => (name === WILDCARD || PORT_NAME.test(name) ? undefined : `"${name}" is not a port name`))
  }
  if (section.admin !== undefined) {
    if (typeof section.admin !== 'boolean') throw new RoleError(`${where}.admin: must be true or false`)
    result.admin = section.admin
  }
  return result
}

function labels(value: unknown, where: string): Record<string, string[]> {
  const map = record(value, where)
  const result: Record<string, string[]> = {}
  for (const [name, values] of Object.entries(map)) {
    const keyProblem = name === WILDCARD ? undefined : labelKeyProblem(name)
    if (keyProblem) throw new RoleError(`${where}: the label name "${name}" ${keyProblem}`)
    const list = typeof values === 'string' ? [values] : values
    result[name] = strings(list, `${where}.${name}`, (item) => labelValueProblem(item))
    if (name === WILDCARD && !result[name].includes(WILDCARD)) throw new RoleError(`${where}: the label name "*" goes only with the value "*" (every node)`)
  }
  return result
}

function record(value: unknown, where: string, known?: string[]): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new RoleError(`${where}: must be a mapping`)
  const map = value as Record<string, unknown>
  for (const key of Object.keys(map)) {
    if (known && !known.includes(key)) throw new RoleError(`${where}: unknown key "${key}"${didYouMean(closest(key, known))}`)
  }
  return map
}

function strings(value: unknown, where: string, problem: (item: string) => string | undefined): string[] {
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) throw new RoleError(`${where}: must be a list of strings`)
  if (value.length > MAX_ITEMS) throw new RoleError(`${where}: at most ${MAX_ITEMS} entries`)
  for (const item of value) {
    const why = problem(item)
    if (why) throw new RoleError(`${where}: ${why}`)
  }
  return [...new Set(value as string[])]
}
