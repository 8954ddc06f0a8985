// `warrenctl lock`, `lock ls`, `lock rm`: a user or a node refused everywhere until the lock
// ends (its --ttl) or is removed, with a message the refused user sees.

import { formatExpiry } from '../../shared/duration.ts'
import { UsageError } from '../../shared/errors.ts'
import { formatTable } from '../table.ts'
import { ctlCommand, out } from './ctl-command.ts'

export const lock = ctlCommand({
  name: 'warrenctl lock',
  summary: 'refuse a user or a node everywhere until the lock ends (without --ttl: until "lock rm")',
  flags: {
    user: { type: 'string', placeholder: 'NAME', description: 'the user to lock: live sessions close, new ones are refused' },
    node: { type: 'string', placeholder: 'NODE', description: 'the node (name or host ID) to lock: its tunnels close, its certificates are refused' },
    ttl: { type: 'duration', defaultText: 'until "warrenctl lock rm"', description: 'how long the lock lasts' },
    message: { type: 'string', placeholder: 'TEXT', description: 'what a refused user is told' },
  },
  description: 'Give exactly one of --user and --node. "warrenctl lock ls" lists the locks, "warrenctl lock rm ID" ends one.',
  examples: ['warrenctl lock --user=alice --ttl=1h --message="key lost, call IT"', 'warrenctl lock --node=pi-1'],
  check(flags) {
    if ((flags.user === undefined) === (flags.node === undefined)) throw new UsageError('a lock needs exactly one target: --user=NAME or --node=NODE')
    for (const target of ['user', 'node'] as const) {
      if (flags[target]?.trim() === '') throw new UsageError(`--${target} is empty: give the ${target} to lock`)
    }
  },
  async run(admin, flags) {
    const lock = await admin.client.call('POST /v1/locks', { body: { user: flags.user, node: flags.node, ttl_ms: flags.ttl, message: flags.message } })
    out(`Created a lock with ID "${lock.id}" on ${lock.target}${lock.expires ? `, until ${formatExpiry(lock.expires, Date.now())}` : ''}`)
  },
})

export const lockLs = ctlCommand({
  name: 'warrenctl lock ls',
  summary: 'the locks in force: ID, target, message, expiry',
  flags: {},
  examples: ['warrenctl lock ls'],
  async run(admin) {
    const { locks } = await admin.client.call('GET /v1/locks')
    if (locks.length === 0) {
      out('No active locks found.')
      return
    }
    const now = Date.now()
    const rows = locks.map((lock) => [lock.id, lock.target, lock.message ?? '', formatExpiry(lock.expires ?? undefined, now)])
    out(formatTable(['ID', 'Target', 'Message', 'Expires'], rows))
  },
})

export const lockRm = ctlCommand({
  name: 'warrenctl lock rm',
  summary: 'end a lock given its ID',
  operands: ['ID'],
  flags: {},
  examples: ['warrenctl lock rm 7d0c5d3e-5b0f-4c1e-9a53-2f1d7f0e4b21'],
  async run(admin, _flags, args) {
    const lock = await admin.client.call('DELETE /v1/locks/:id', { params: { id: args[0] } })
    out(`Lock ${lock.id} on ${lock.target} has been removed`)
  },
})
