// `warrenctl lock`, `lock ls`, `lock rm`: a user or a node refused everywhere until the lock
// ends (its --ttl) or is removed, with a message the refused user sees.

import type { AdminConnection } from './admin-client.ts'
import type { Command } from './warrenctl.ts'
import { formatExpiry } from '../shared/duration.ts'
import { UsageError } from '../shared/errors.ts'
import { formatTable } from './table.ts'

const out = (text: string) => process.stdout.write(text + '\n')

export const LOCK_USAGE = `  lock --user=NAME | --node=NODE [--ttl=1h] [--message=TEXT]
                                 refuse a user or a node everywhere until the lock ends (no --ttl: until lock rm)
  lock ls                        the locks in force
  lock rm ID                     end a lock`

export const LOCK_COMMANDS: Record<string, Command> = {
  lock: {
    flags: {
      user: { type: 'string', description: 'the user to lock: live sessions close, new ones are refused' },
      node: { type: 'string', description: 'the node (name or host ID) to lock: its tunnels close, its certificates are refused' },
      ttl: { type: 'duration', description: 'how long the lock lasts (default: until "warrenctl lock rm")' },
      message: { type: 'string', description: 'what a refused user is told' },
    },
    args: 0,
    async run(admin: AdminConnection, flags) {
      if ((flags.user === undefined) === (flags.node === undefined)) throw new UsageError('a lock needs exactly one target: --user=NAME or --node=NODE')
      const lock = await admin.client.call('POST /v1/locks', { body: { user: flags.user, node: flags.node, ttl_ms: flags.ttl, message: flags.message } })
      out(`Created a lock with ID "${lock.id}" on ${lock.target}${lock.expires ? `, until ${formatExpiry(lock.expires, Date.now())}` : ''}`)
    },
  },
  'lock ls': {
    flags: {},
    args: 0,
    async run(admin: AdminConnection) {
      const { locks } = await admin.client.call('GET /v1/locks')
      if (locks.length === 0) {
        out('No active locks found.')
        return
      }
      const now = Date.now()
      const rows = locks.map((lock) => [lock.id, lock.target, lock.message ?? '', formatExpiry(lock.expires ?? undefined, now)])
      out(formatTable(['ID', 'Target', 'Message', 'Expires'], rows))
    },
  },
  'lock rm': {
    flags: {},
    args: 1,
    async run(admin: AdminConnection, _flags, args) {
      const lock = await admin.client.call('DELETE /v1/locks/:id', { params: { id: args[0] } })
      out(`Lock ${lock.id} on ${lock.target} has been removed`)
    },
  },
}
