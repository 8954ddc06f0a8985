// What a user's certificates allow: the user's roles resolved by the auth server when it
// issues them (auth/user-roles.ts), carried inside both certificates (access-cert.ts), so
// that the proxy and the node each judge a connection without asking the backend. This file
// is the decision: may this access reach a node with these labels, as this login, this port?

/** Label name → the values that match; `'*'` matches any value, and the name `'*'` any node. */
export type LabelMatcher = Record<string, string[]>

/**
 * What one role allows, as Teleport judges roles: its logins and its ports, on the nodes its
 * labels select. A role's logins never reach the nodes only another role selects.
 */
export interface AccessRule {
  nodes: LabelMatcher
  logins: string[]
  ports: string[]
}

export interface Access {
  /** The OS accounts the user may log in as somewhere: the SSH certificate's principals too. */
  logins: string[]
  /** A node is reachable when one of these matches its labels (one per role that allows nodes)... */
  nodes: LabelMatcher[]
  /** ...and none of these does: a role's deny rule overrides every allow. */
  deny_nodes: LabelMatcher[]
  /** Names of the forwarded ports nodes declare; `'*'` for all of them. */
  ports: string[]
  deny_ports: string[]
  /** One per role that allows nodes: which logins and ports on which nodes (the denied ones taken out). */
  rules: AccessRule[]
  /** May administer the cluster (the built-in role `editor`). */
  admin: boolean
  /** May forward ports from the node (`ssh -L`); unless a role sets port_forwarding: false. */
  local_forwarding: boolean
  /** May listen on the node (`ssh -R`); when a role sets port_forwarding: true and none false. */
  remote_forwarding: boolean
  /** May forward an SSH agent to the node (`ssh -A`); when a role sets forward_agent: true. */
  agent_forwarding: boolean
  /** Sessions at once on one SSH connection (the node counts them); absent: no limit. */
  max_sessions?: number
  /** Connections (SSH, forwarded ports) at once through the cluster's proxies (they count them together); absent: no limit. */
  max_connections?: number
}

/** What a certificate issued before the forwarding options allows: ssh -L only, as then. */
const FORWARDING_BEFORE_OPTIONS = { local_forwarding: true, remote_forwarding: false, agent_forwarding: false }

export const WILDCARD = '*'

/**
 * What a certificate issued before roles existed allows: the built-in role `access` with the
 * certificate's principals as logins, so that clusters that were running keep working.
 */
export function legacyAccess(principals: string[]): Access {
  const everywhere = { [WILDCARD]: [WILDCARD] }
  return {
    logins: [...principals],
    nodes: [everywhere],
    deny_nodes: [],
    ports: [WILDCARD],
    deny_ports: [],
    rules: [{ nodes: everywhere, logins: [...principals], ports: [WILDCARD] }],
    admin: false,
    ...FORWARDING_BEFORE_OPTIONS,
  }
}

/** Whether a matcher selects a node with `labels`: every name it lists must match. An empty matcher selects nothing. */
export function matchesLabels(matcher: LabelMatcher, labels: Record<string, string>): boolean {
  const entries = Object.entries(matcher)
  if (entries.length === 0) return false
  return entries.every(([name, values]) => {
    if (name === WILDCARD) return values.includes(WILDCARD)
    const value = Object.hasOwn(labels, name) ? labels[name] : undefined
    return value !== undefined && (values.includes(WILDCARD) || values.includes(value))
  })
}

/** The rules of the roles that select a node with these labels. */
function rulesFor(access: Access, labels: Record<string, string>): AccessRule[] {
  return access.rules.filter((rule) => matchesLabels(rule.nodes, labels))
}

/** Why the access may not reach a node with these labels, or undefined when it may. */
export function nodeRefusal(access: Access, labels: Record<string, string>): string | undefined {
  if (access.deny_nodes.some((matcher) => matchesLabels(matcher, labels))) return "the user's roles deny this node"
  if (rulesFor(access, labels).length === 0) return "the user's roles do not allow this node"
  return undefined
}

/** The logins the access allows on a node with these labels: those of the roles that select it. */
export function loginsOn(access: Access, labels: Record<string, string>): string[] {
  if (nodeRefusal(access, labels)) return []
  return [...new Set(rulesFor(access, labels).flatMap((rule) => rule.logins))].filter((login) => access.logins.includes(login))
}

/** Why the access may not log in as `login` on a node with these labels, or undefined when it may. */
export function loginRefusal(access: Access, login: string, labels: Record<string, string>): string | undefined {
  if (!access.logins.includes(login)) return `the user's roles do not allow the login "${login}"`
  if (!loginsOn(access, labels).includes(login)) return `the user's roles do not allow the login "${login}" on this node`
  return undefined
}

/** Why the access may not reach the forwarded port of that name on a node with these labels, or undefined when it may. */
export function portRefusal(access: Access, name: string, labels: Record<string, string>): string | undefined {
  if (access.deny_ports.includes(name) || access.deny_ports.includes(WILDCARD)) return `the user's roles deny the port "${name}"`
  if (!rulesFor(access, labels).some((rule) => rule.ports.includes(name) || rule.ports.includes(WILDCARD))) return `the user's roles do not allow the port "${name}"`
  return undefined
}

/** Whether the access reaches every port (`'*'`) on a node with these labels, none denied. */
export function allPortsOn(access: Access, labels: Record<string, string>): boolean {
  return access.deny_ports.length === 0 && rulesFor(access, labels).some((rule) => rule.ports.includes(WILDCARD))
}

/** The compact JSON both certificates carry. */
export function encodeAccess(access: Access): string {
  return JSON.stringify({
    logins: access.logins,
    nodes: access.nodes,
    deny_nodes: access.deny_nodes,
    ports: access.ports,
    deny_ports: access.deny_ports,
    rules: access.rules,
    admin: access.admin,
    local_forwarding: access.local_forwarding,
    remote_forwarding: access.remote_forwarding,
    agent_forwarding: access.agent_forwarding,
    ...(access.max_sessions === undefined ? {} : { max_sessions: access.max_sessions }),
    ...(access.max_connections === undefined ? {} : { max_connections: access.max_connections }),
  })
}

/** Reads the JSON of encodeAccess; anything else throws, and the certificate is refused. */
export function decodeAccess(json: string): Access {
  const bad = (what: string) => new Error(`the certificate's access is malformed: ${what}`)
  let value: unknown
  try {
    value = JSON.parse(json)
  } catch {
    throw bad('not JSON')
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad('not an object')
  const record = value as Record<string, unknown>
  const strings = (name: string): string[] => {
    const list = record[name]
    if (!Array.isArray(list) || !list.every((item) => typeof item === 'string')) throw bad(`"${name}" is not a list of strings`)
    return list
  }
  const isStrings = (list: unknown): list is string[] => Array.isArray(list) && list.every((item) => typeof item === 'string')
  const matchersIn = (list: unknown[], name: string): LabelMatcher[] => {
    for (const matcher of list) {
      if (typeof matcher !== 'object' || matcher === null || Array.isArray(matcher)) throw bad(`${name} holds a matcher that is not an object`)
      for (const values of Object.values(matcher)) {
        if (!isStrings(values)) throw bad(`${name} holds a label whose values are not strings`)
      }
    }
    return list as LabelMatcher[]
  }
  const matchers = (name: string): LabelMatcher[] => {
    const list = record[name]
    if (!Array.isArray(list)) throw bad(`"${name}" is not a list`)
    return matchersIn(list, `"${name}"`)
  }
  // Absent from certificates issued before roles were judged one by one: every allowed node then took every login and port.
  const rules = (list: unknown): AccessRule[] => {
    if (!Array.isArray(list)) throw bad('"rules" is not a list')
    return list.map((rule) => {
      if (typeof rule !== 'object' || rule === null || Array.isArray(rule)) throw bad('"rules" holds a rule that is not an object')
      const { nodes, logins, ports } = rule as Record<string, unknown>
      const [matcher] = matchersIn([nodes], '"rules"')
      if (!isStrings(logins) || !isStrings(ports)) throw bad('"rules" holds a rule whose logins or ports are not lists of strings')
      return { nodes: matcher, logins, ports }
    })
  }
  if (typeof record.admin !== 'boolean') throw bad('"admin" is not true or false')
  // Absent from certificates issued before the forwarding options: what they allowed then.
  const flag = (name: keyof typeof FORWARDING_BEFORE_OPTIONS): boolean => {
    const value = record[name] ?? FORWARDING_BEFORE_OPTIONS[name]
    if (typeof value !== 'boolean') throw bad(`"${name}" is not true or false`)
    return value
  }
  // Absent from certificates whose roles set none, and from those issued before the limits.
  const limit = (name: 'max_sessions' | 'max_connections'): Partial<Pick<Access, typeof name>> => {
    const value = record[name]
    if (value === undefined) return {}
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) throw bad(`"${name}" is not a whole number of at least 1`)
    return { [name]: value }
  }
  const logins = strings('logins')
  const nodes = matchers('nodes')
  const ports = strings('ports')
  return {
    logins,
    nodes,
    deny_nodes: matchers('deny_nodes'),
    ports,
    deny_ports: strings('deny_ports'),
    rules: record.rules === undefined ? nodes.map((matcher) => ({ nodes: matcher, logins, ports })) : rules(record.rules),
    admin: record.admin,
    local_forwarding: flag('local_forwarding'),
    remote_forwarding: flag('remote_forwarding'),
    agent_forwarding: flag('agent_forwarding'),
    ...limit('max_sessions'),
    ...limit('max_connections'),
  }
}
