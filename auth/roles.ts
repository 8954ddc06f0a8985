// The roles a join token may grant. A join asking for a role its token lacks is refused.
export const TOKEN_ROLES = ['auth', 'proxy', 'node', 'app', 'kube', 'db', 'signup'] as const
export type TokenRole = (typeof TOKEN_ROLES)[number]

export function isTokenRole(value: string): value is TokenRole {
  return (TOKEN_ROLES as readonly string[]).includes(value)
}

/** Parses "node,proxy" into roles; throws with the offending name otherwise. */
export function parseRoles(text: string): TokenRole[] {
  const roles = text
    .split(',')
    .map((r) => r.trim().toLowerCase())
    .filter(Boolean)
  if (roles.length === 0) throw new Error(`no role given: use one or more of ${TOKEN_ROLES.join(', ')}`)
  for (const role of roles) {
    if (!isTokenRole(role)) throw new Error(`unknown role "${role}": use one or more of ${TOKEN_ROLES.join(', ')}`)
  }
  return [...new Set(roles)] as TokenRole[]
}
