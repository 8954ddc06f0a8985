// `warrenctl create -f role.yaml`, `get roles` and `rm role/NAME`: roles of people, as
// YAML documents close to Teleport's (the auth server checks every field). `get nodes`
// shows the fleet's nodes the same way (nodes.ts).

import { readFileSync } from 'node:fs'
import { parseAllDocuments, stringify } from 'yaml'
import { UsageError, WarrenError } from '../../shared/errors.ts'
import type { RoleJson } from '../../shared/protocol/roles.ts'
import { formatTable } from '../table.ts'
import { ctlCommand, out } from './ctl-command.ts'
import { getNodes } from './nodes.ts'

export const create = ctlCommand({
  name: 'warrenctl create',
  summary: 'create roles from a YAML file, or replace those of the same names',
  flags: {
    file: { type: 'string', short: 'f', placeholder: 'FILE', description: 'the YAML file, one role per document ("-" for standard input; required)' },
  },
  description: 'A role takes effect at the next login or "warrenctl auth sign" of its users. The built-in roles access and editor cannot be replaced.',
  examples: ['warrenctl create -f lab.yaml', 'cat lab.yaml | warrenctl create -f -'],
  check(flags) {
    roleFile(flags.file)
  },
  async run(admin, flags) {
    for (const role of readDocuments(roleFile(flags.file))) {
      const saved = await admin.client.call('POST /v1/roles', { body: role })
      out(`role "${saved.name}" has been ${saved.created ? 'created' : 'updated'}`)
    }
  },
})

export const get = ctlCommand({
  name: 'warrenctl get',
  summary: 'show resources: roles, nodes (or one: nodes/NAME)',
  operands: ['RESOURCE'],
  flags: {
    format: { type: 'enum', values: ['yaml', 'json', 'text'], default: 'yaml', description: 'how to show them' },
  },
  description: 'Nodes are those whose heartbeat is fresh, one YAML document each (kind: node, metadata.name its host ID, spec.hostname its name), as tctl get nodes shows them.',
  examples: ['warrenctl get roles', 'warrenctl get roles --format=text', 'warrenctl get nodes', 'warrenctl get nodes/pi-1 --format=json'],
  check(_flags, args) {
    resource(args[0])
  },
  async run(admin, flags, args) {
    const { kind, name } = resource(args[0])
    if (kind === 'nodes') return getNodes(admin, flags.format, name)
    const { roles, built_in } = await admin.client.call('GET /v1/roles')
    if (flags.format === 'json') out(JSON.stringify(roles, null, 2))
    else if (flags.format === 'yaml') process.stdout.write(roles.map((role) => stringify(role)).join('---\n'))
    else
      out(
        formatTable(
          ['Role', 'Built in', 'Nodes', 'Logins', 'Ports', 'Max session TTL'],
          roles.map((role) => textRow(role, built_in.includes(role.metadata.name))),
        ),
      )
  },
})

/** The file `create` reads (-f), which it needs. */
function roleFile(file: string | undefined): string {
  if (file === undefined) throw new UsageError('missing -f FILE: the YAML file of the role ("-" for standard input)')
  return file
}

/** What `warrenctl get` shows: roles, nodes, or one node by name (`nodes/NAME`). */
function resource(text: string): { kind: 'roles' | 'nodes'; name?: string } {
  const [kind, name, ...more] = text.split('/')
  if ((kind === 'nodes' || kind === 'node') && more.length === 0 && name !== '') return { kind: 'nodes', name }
  if ((kind !== 'roles' && kind !== 'role') || name !== undefined) throw new UsageError(`unknown resource "${text}": "warrenctl get" shows roles, nodes or nodes/NAME`)
  return { kind: 'roles' }
}

export const rm = ctlCommand({
  name: 'warrenctl rm',
  summary: 'remove a resource: role/NAME (refused while a user has the role)',
  operands: ['role/NAME'],
  flags: {},
  examples: ['warrenctl rm role/lab'],
  check(_flags, args) {
    roleToRemove(args[0])
  },
  async run(admin, _flags, args) {
    const removed = await admin.client.call('DELETE /v1/roles/:name', { params: { name: roleToRemove(args[0]) } })
    out(`role "${removed.name}" has been deleted`)
  },
})

/** The name of the role that `rm`'s argument (`role/NAME`) names. */
function roleToRemove(text: string): string {
  const slash = text.indexOf('/')
  if (slash < 0 || text.slice(0, slash) !== 'role' || text.length === slash + 1) throw new UsageError(`cannot remove "${text}": name a role as role/NAME, e.g. role/lab`)
  return text.slice(slash + 1)
}

/** The YAML documents of `file` as objects; a document that is no YAML mapping is an error naming it. */
function readDocuments(file: string): Record<string, unknown>[] {
  let text: string
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8')
  } catch (error) {
    throw new WarrenError(`cannot read ${file === '-' ? 'standard input' : file}: ${(error as Error).message}`)
  }
  const documents = parseAllDocuments(text)
  if (!Array.isArray(documents)) throw new WarrenError(`${file}: no YAML document`)
  const values = documents.map((document, index) => {
    const where = documents.length > 1 ? `${file}, document ${index + 1}` : file
    if (document.errors.length > 0) throw new WarrenError(`${where}: ${document.errors[0].message}`)
    const value: unknown = document.toJS()
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new WarrenError(`${where}: a role is a YAML mapping (kind: role, version: v1, metadata, spec)`)
    return value as Record<string, unknown>
  })
  if (values.length === 0) throw new WarrenError(`${file}: no YAML document`)
  return values
}

function textRow(role: RoleJson, builtIn: boolean): string[] {
  const { allow, deny, options } = role.spec
  const labels = (matcher?: Record<string, string[]>) => (matcher ? Object.entries(matcher).map(([name, values]) => `${name}=${values.join('|')}`) : [])
  const nodes = [...labels(allow.node_labels), ...labels(deny.node_labels).map((label) => `!${label}`)].join(',')
  const logins = [...(allow.logins ?? ['{{internal.logins}}']), ...(deny.logins ?? []).map((login) => `!${login}`)].join(',')
  const ports = [...(allow.ports ?? []), ...(deny.ports ?? []).map((port) => `!${port}`)].join(',')
  return [role.metadata.name, builtIn ? 'yes' : '', nodes || '-', logins, ports || '-', options.max_session_ttl ?? '12h (default)']
}
