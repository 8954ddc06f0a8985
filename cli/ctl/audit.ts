// `warrenctl audit ls`: the audit trail, who did what, filtered by age, type, user and node;
// a table to read or JSON for scripts and log systems.

import { printable } from '../../shared/printable.ts'
import type { AuditEvent } from '../../shared/protocol/audit.ts'
import { formatTable } from '../table.ts'
import { ctlCommand, out } from './ctl-command.ts'

/** Fields shown in their own columns, or not worth repeating in Details. */
const SHOWN = new Set(['id', 'time', 'type', 'cluster', 'user', 'node'])

export const auditLs = ctlCommand({
  name: 'warrenctl audit ls',
  summary: 'the audit trail: joins, logins, certificates, changes by admins, SSH sessions and what ran in them',
  flags: {
    since: { type: 'duration', default: 24 * 3_600_000, description: 'how far back to look' },
    type: { type: 'string', placeholder: 'TYPE', description: 'only events of this type, or types matching a glob (session.*)' },
    user: { type: 'string', placeholder: 'NAME', description: 'only events of this user (as the user, or the admin who acted)' },
    node: { type: 'string', placeholder: 'NODE', description: 'only events on this node (name or host ID)' },
    format: { type: 'enum', values: ['text', 'json'], default: 'text', description: 'a table, or one JSON array of the events' },
  },
  description: 'Events are listed oldest first, with their time in UTC.',
  examples: ['warrenctl audit ls', 'warrenctl audit ls --since=1h --type=session.* --node=pi-1', 'warrenctl audit ls --user=alice --format=json'],
  async run(admin, flags) {
    const query = { since: Date.now() - flags.since, type: flags.type, user: flags.user, node: flags.node }
    const { events, truncated } = await admin.client.call('GET /v1/audit/events', { query })
    if (flags.format === 'json') {
      out(JSON.stringify(events, null, 2))
      // Standard output stays one JSON array; whoever reads it is told on standard error.
      if (truncated) process.stderr.write(`warrenctl: only the newest ${events.length} events are listed: narrow the search with --since, --type, --user or --node\n`)
      return
    }
    if (events.length === 0) {
      out('No audit events found.')
      return
    }
    out(formatTable(['Time', 'Type', 'User', 'Node', 'Details'], events.map(row)))
    if (truncated) out(`Only the newest ${events.length} events are shown: narrow the search with --since, --type, --user or --node.`)
  },
})

function row(event: AuditEvent): string[] {
  const details = Object.entries(event)
    .filter(([name, value]) => !SHOWN.has(name) && value !== undefined && value !== null)
    .map(([name, value]) => `${name}=${printable(String(value))}`)
  return [new Date(event.time).toISOString().replace(/\.\d+Z$/, 'Z'), event.type, String(event.user ?? ''), String(event.node ?? ''), details.join(' ')]
}
