// Roles of people (not the roles a join token grants, auth/roles.ts): kept in the backend,
// one item each, plus two built in. A user's certificates carry what the user's roles
// resolve to when they are issued (resolveAccess), so a changed role applies from the next
// login or `auth sign` on.

import { type Access, type AccessRule, type LabelMatcher, WILDCARD } from '../shared/access.ts'
import { parseDuration } from '../shared/duration.ts'
import type { Backend } from './backend/backend.ts'
import { INTERNAL_LOGINS, parseRole, type Role, RoleError, type RoleRules, validateRoleName } from './role-spec.ts'
import type { UserDirectory, UserRecord } from './users.ts'

const PREFIX = '/roles/'
/** A role without `max_session_ttl` lets certificates live this long, at most. */
export const DEFAULT_MAX_SESSION_TTL_MS = 12 * 3_600_000

function builtIn(name: string, description: string, allow: RoleRules): Role {
  return { kind: 'role', version: 'v1', metadata: { name, description }, spec: { allow, deny: {}, options: {} } }
}

/** Built in, so that a cluster works before anyone writes a role; never removed or replaced. */
export const BUILT_IN_ROLES: readonly Role[] = [
  builtIn('access', "every node, as the user's own logins, and every forwarded port", { logins: [INTERNAL_LOGINS], node_labels: { [WILDCARD]: [WILDCARD] }, ports: [WILDCARD] }),
  builtIn('editor', 'cluster administration through the admin API', { admin: true }),
]

/** No role of that name. */
export class UnknownRole extends RoleError {}

/** The role is given to users, who would lose it: named in the message. */
export class RoleInUse extends RoleError {}

export class RoleDirectory {
  private readonly backend: Backend
  private readonly users: UserDirectory

  constructor(backend: Backend, users: UserDirectory) {
    this.backend = backend
    this.users = users
  }

  /** Creates or replaces a role (already parsed by parseRole); answers whether it was new. */
  async put(role: Role): Promise<{ created: boolean }> {
    refuseBuiltIn(role.metadata.name, 'replaced')
    const existed = await this.backend.get(PREFIX + role.metadata.name)
    await this.backend.put(PREFIX + role.metadata.name, JSON.stringify(role))
    return { created: !existed }
  }

  async get(name: string): Promise<Role | undefined> {
    const builtInRole = BUILT_IN_ROLES.find((role) => role.metadata.name === name)
    if (builtInRole) return builtInRole
    const item = await this.backend.get(PREFIX + name)
    return item ? parseRole(JSON.parse(item.value)) : undefined
  }

  /** The built-in roles, then the others by name. */
  async list(): Promise<Role[]> {
    const stored = (await this.backend.list(PREFIX)).map((item) => parseRole(JSON.parse(item.value)))
    return [...BUILT_IN_ROLES, ...stored]
  }

  /** Throws RoleError naming the first of `names` that does not exist. */
  async checkExist(names: string[]): Promise<void> {
    for (const name of names) {
      if (!(await this.get(name))) throw new RoleError(`no role "${name}": "warrenctl get roles" lists them, "warrenctl create -f role.yaml" adds one`)
    }
  }

  /** Removes a role no user has; RoleInUse names the users who still have it. */
  async remove(name: string): Promise<void> {
    validateRoleName(name)
    refuseBuiltIn(name, 'removed')
    const item = await this.backend.get(PREFIX + name)
    if (!item) throw new UnknownRole(`no role "${name}"`)
    const holders = (await this.users.list()).filter((user) => user.roles.includes(name)).map((user) => user.name)
    if (holders.length > 0) throw new RoleInUse(`role "${name}" is given to ${holders.length === 1 ? 'user' : 'users'} ${holders.join(', ')}: take it from them first`)
    // Only the version that was checked: a role replaced meanwhile is not removed unseen.
    if (!(await this.backend.txn([{ key: item.key, revision: item.revision }], [{ op: 'delete', key: item.key }]))) {
      throw new RoleError(`role "${name}" changed while being removed: try again`)
    }
  }

  /**
   * What `user`'s certificates allow now. A role of the user's that no longer exists (removed
   * in a race with the user's creation: `remove` refuses one a user has) makes it nothing at
   * all, not the other roles without it: it may have been a deny.
   */
  async accessOf(user: UserRecord): Promise<{ access: Access; maxSessionTtlMs: number }> {
    const roles = await Promise.all(user.roles.map((name) => this.get(name)))
    const found = roles.filter((role) => role !== undefined)
    return resolveAccess(found.length === roles.length ? found : [], user.logins)
  }
}

function refuseBuiltIn(name: string, what: string): void {
  if (BUILT_IN_ROLES.some((role) => role.metadata.name === name)) throw new RoleError(`role "${name}" is built in and cannot be ${what}`)
}

/** The smallest limit of that name among `roles`, as an access field; none when no role sets it. */
function strictest(name: 'max_sessions' | 'max_connections', roles: Role[]): Partial<Pick<Access, typeof name>> {
  const limits = roles.flatMap((role) => (role.spec.options[name] === undefined ? [] : [role.spec.options[name]]))
  return limits.length === 0 ? {} : { [name]: Math.min(...limits) }
}

/**
 * Each role's allow rule on its own (its logins and ports on the nodes its labels select,
 * as Teleport judges roles), minus every role's deny rule. A role's logins are those it names,
 * `{{internal.logins}}` being the user's own; one naming none gives none, as in Teleport (a
 * role written to open a port must not open a shell). The flat lists (all logins, all
 * matchers) are what the certificates name besides. The certificate lifetime is capped by the
 * smallest `max_session_ttl` (DEFAULT_MAX_SESSION_TTL_MS for a role without one).
 */
export function resolveAccess(roles: Role[], userLogins: string[]): { access: Access; maxSessionTtlMs: number } {
  const expand = (logins: string[]) => logins.flatMap((login) => (login === INTERNAL_LOGINS ? userLogins : [login]))
  const allowedLogins = roles.flatMap((role) => expand(role.spec.allow.logins ?? []))
  const deniedLogins = new Set(roles.flatMap((role) => expand(role.spec.deny.logins ?? [])))
  // A denied `*` (parseRole allows it only there) takes every login.
  const logins = [...new Set(allowedLogins)].filter((login) => !deniedLogins.has(login) && !deniedLogins.has(WILDCARD))
  const allowedHere = (role: Role) => expand(role.spec.allow.logins ?? []).filter((login) => logins.includes(login))
  const rules: AccessRule[] = roles.flatMap((role) => {
    const nodes = role.spec.allow.node_labels
    return nodes ? [{ nodes, logins: [...new Set(allowedHere(role))], ports: role.spec.allow.ports ?? [] }] : []
  })
  const matchers = (side: 'allow' | 'deny'): LabelMatcher[] => roles.flatMap((role) => (role.spec[side].node_labels ? [role.spec[side].node_labels] : []))
  const ports = (side: 'allow' | 'deny') => [...new Set(roles.flatMap((role) => role.spec[side].ports ?? []))]
  const admin = roles.some((role) => role.spec.allow.admin === true) && !roles.some((role) => role.spec.deny.admin === true)
  // As in Teleport: port_forwarding: false in any role refuses, forward_agent: true in any allows.
  const portForwarding = roles.map((role) => role.spec.options.port_forwarding)
  const forwardingRefused = portForwarding.includes(false)
  const ttls = roles.map((role) => (role.spec.options.max_session_ttl ? parseDuration(role.spec.options.max_session_ttl) : DEFAULT_MAX_SESSION_TTL_MS))
  return {
    access: {
      logins,
      nodes: matchers('allow'),
      deny_nodes: matchers('deny'),
      ports: ports('allow'),
      deny_ports: ports('deny'),
      rules,
      admin,
      local_forwarding: !forwardingRefused,
      remote_forwarding: portForwarding.includes(true) && !forwardingRefused,
      agent_forwarding: roles.some((role) => role.spec.options.forward_agent === true),
      // As in Teleport: the strictest of the roles that set one.
      ...strictest('max_sessions', roles),
      ...strictest('max_connections', roles),
    },
    maxSessionTtlMs: ttls.length === 0 ? DEFAULT_MAX_SESSION_TTL_MS : Math.min(...ttls),
  }
}
