// What a user's certificates allow: the user's roles resolved by the auth server when it
// issues them (auth/user-roles.ts), carried inside both certificates (access-cert.ts), so
// that the proxy and the node each judge a connection without asking the backend. This file
// is the decision: may this access reach a node with these labels, as this login, this port?

/** Label name → the values that match; `'*'` matches any value, and the name `'*'` any node. */
export type LabelMatcher = Record<string, string[]>

export interface Access {
  /** The OS accounts the user may log in as: the SSH certificate's principals too. */
  logins: string[]
  /** A node is reachable when one of these matches its labels (one per role that allows nodes)... */
  nodes: LabelMatcher[]
  /** ...and none of these does: a role's deny rule overrides every allow. */
  deny_nodes: LabelMatcher[]
  /** Names of the forwarded ports nodes declare; `'*'` for all of them. */
  ports: string[]
  deny_ports: string[]
  /** May administer the cluster (the built-in role `editor`). */
  admin: boolean
  /** May forward ports from the node (`ssh -L`); unless a role sets port_forwarding: false. */
  local_forwarding: boolean
  /** May listen on the node (`ssh -R`); when a role sets port_forwarding: true and none false. */
  remote_forwarding: boolean
  /** May forward an SSH agent to the node (`ssh -A`); when a role sets forward_agent: true. */
  agent_forwarding: boolean
}

/** What a certificate issued before the forwarding options allows: ssh -L only, as then. */
const FORWARDING_BEFORE_OPTIONS = { local_forwarding: true, remote_forwarding: false, agent_forwarding: false }

export const WILDCARD = '*'

/**
 * What a certificate issued before roles existed allows: the built-in role `access` with the
 * certificate's principals as logins, so that clusters that were running keep working.
 */
export function legacyAccess(principals: string[]): Access {
  return { logins: [...principals], nodes: [{ [WILDCARD]: [WILDCARD] }], deny_nodes: [], ports: [WILDCARD], deny_ports: [], admin: false, ...FORWARDING_BEFORE_OPTIONS }
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

/** Why the access may not reach a node with these labels, or undefined when it may. */
export function nodeRefusal(access: Access, labels: Record<string, string>): string | undefined {
  if (access.deny_nodes.some((matcher) => matchesLabels(matcher, labels))) return "the user's roles deny this node"
  if (!access.nodes.some((matcher) => matchesLabels(matcher, labels))) return "the user's roles do not allow this node"
  return undefined
}

/** Why the access may not log in as `login`, or undefined when it may. */
export function loginRefusal(access: Access, login: string): string | undefined {
  return access.logins.includes(login) ? undefined : `the user's roles do not allow the login "${login}"`
}

/** Why the access may not reach the forwarded port of that name, or undefined when it may. */
export function portRefusal(access: Access, name: string): string | undefined {
  if (access.deny_ports.includes(name) || access.deny_ports.includes(WILDCARD)) return `the user's roles deny the port "${name}"`
  if (!access.ports.includes(name) && !access.ports.includes(WILDCARD)) return `the user's roles do not allow the port "${name}"`
  return undefined
}

/** The compact JSON both certificates carry. */
export function encodeAccess(access: Access): string {
  return JSON.stringify({
    logins: access.logins,
    nodes: access.nodes,
    deny_nodes: access.deny_nodes,
    ports: access.ports,
    deny_ports: access.deny_ports,
    admin: access.admin,
    local_forwarding: access.local_forwarding,
    remote_forwarding: access.remote_forwarding,
    agent_forwarding: access.agent_forwarding,
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
  const matchers = (name: string): LabelMatcher[] => {
    const list = record[name]
    if (!Array.isArray(list)) throw bad(`"${name}" is not a list`)
    for (const matcher of list) {
      if (typeof matcher !== 'object' || matcher === null || Array.isArray(matcher)) throw bad(`"${name}" holds a matcher that is not an object`)
      for (const values of Object.values(matcher)) {
        if (!Array.isArray(values) || !values.every((item) => typeof item === 'string')) throw bad(`"${name}" holds a label whose values are not strings`)
      }
    }
    return list as LabelMatcher[]
  }
  if (typeof record.admin !== 'boolean') throw bad('"admin" is not true or false')
  // Absent from certificates issued before the forwarding options: what they allowed then.
  const flag = (name: keyof typeof FORWARDING_BEFORE_OPTIONS): boolean => {
    const value = record[name] ?? FORWARDING_BEFORE_OPTIONS[name]
    if (typeof value !== 'boolean') throw bad(`"${name}" is not true or false`)
    return value
  }
  return {
    logins: strings('logins'),
    nodes: matchers('nodes'),
    deny_nodes: matchers('deny_nodes'),
    ports: strings('ports'),
    deny_ports: strings('deny_ports'),
    admin: record.admin,
    local_forwarding: flag('local_forwarding'),
    remote_forwarding: flag('remote_forwarding'),
    agent_forwarding: flag('agent_forwarding'),
  }
}
