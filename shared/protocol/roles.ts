// Roles of people as the admin API carries them (`warrenctl create -f role.yaml`, `get
// roles`, `rm role/NAME`): the resource itself, close to Teleport's. The auth server reads a
// role strictly (auth/role-spec.ts); the body's shape only asks for an object to read.

import { FieldError, type Shape } from './shape.ts'

export interface RoleRules {
  logins?: string[]
  /** Label name → accepted values (`'*'` any); the name `'*'` with `'*'` matches every node. */
  node_labels?: Record<string, string[]>
  /** Names of forwarded ports that nodes declare; `'*'` for all. */
  ports?: string[]
  /** May administer the cluster through the admin API. */
  admin?: boolean
}

export interface RoleJson {
  kind: 'role'
  version: 'v1'
  metadata: { name: string; description?: string }
  spec: {
    allow: RoleRules
    deny: RoleRules
    options: {
      max_session_ttl?: string
      /** ssh -L and -R: false refuses both, true allows both; unset allows -L only. */
      port_forwarding?: boolean
      /** ssh -A: true allows it. */
      forward_agent?: boolean
      /** Sessions (shells, commands, SFTP) at once on one SSH connection; unset: no limit. */
      max_sessions?: number
      /** Connections (SSH, forwarded ports) at once through every proxy of the cluster; unset: no limit. */
      max_connections?: number
    }
  }
}

/** Any JSON object: the auth server checks each of its fields itself. */
function document(): Shape<Record<string, unknown>> {
  return {
    optional: false,
    parse(value, field) {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new FieldError(field, `field "${field}" must be an object`)
      return value as Record<string, unknown>
    },
  }
}

export const ROLE_BODY = document()

/** POST /v1/roles: the role was created, or replaced one of its name. */
export interface RoleSaved {
  name: string
  created: boolean
}

/** GET /v1/roles: every role, the built-in ones first. */
export interface RoleList {
  roles: RoleJson[]
  /** The names of the built-in roles, which cannot be replaced or removed. */
  built_in: string[]
}
