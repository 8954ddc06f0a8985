// `warrenctl users add|ls|rm|reset`: the people who log in, the OS logins their certificates
// may use, and the invitations (single-use sign-up tokens) with which they set a password
// and a second factor.

import { formatDuration } from '../../shared/duration.ts'
import { UsageError } from '../../shared/errors.ts'
import { DEFAULT_SIGNUP_TTL_MS, type UserInvited } from '../../shared/protocol/admin.ts'
import { formatTable } from '../table.ts'
import type { AdminConnection } from './admin-client.ts'
import { ctlCommand, out } from './ctl-command.ts'
import { clusterAddress, trustedPins } from './tokens.ts'

const TTL_FLAG = { type: 'duration', default: DEFAULT_SIGNUP_TTL_MS, description: 'how long the sign-up token lives' } as const

/** A duration as short as it reads: 1h, 1h30m, 10m. */
function shortDuration(ms: number): string {
  return formatDuration(ms).replace(/(?<!\d)0[hms]/g, '') || '0s'
}

/** What the admin shares with the invited person: the command that signs up and logs in. */
async function printInvitation(admin: AdminConnection, invited: UserInvited, ttlMs: number, verb: string): Promise<void> {
  const status = await admin.client.call('GET /v1/status')
  out(`User "${invited.name}" has been ${verb} but requires a password. Share this with the user; it is valid for ${shortDuration(ttlMs)}:`)
  out('')
  out(`warren login --proxy=${clusterAddress(admin, status)} --invite=${invited.signup_token}`)
  out('')
  out(`On first contact warren login shows the cluster's CA pin, which should read ${trustedPins(admin).join(' or ')}`)
}

export const usersAdd = ctlCommand({
  name: 'warrenctl users add',
  summary: 'add a user, and print the command with which that person sets a password and a second factor',
  operands: ['NAME'],
  flags: {
    logins: { type: 'list', noun: 'login', description: 'OS accounts the user may log in as (required)' },
    roles: { type: 'list', noun: 'role', description: 'roles that decide which nodes, logins and ports the user reaches (default access)' },
    ttl: TTL_FLAG,
  },
  examples: ['warrenctl users add alice --logins=root,pi', 'warrenctl users add bob --logins=pi --roles=access,editor --ttl=24h'],
  check(flags) {
    if (!flags.logins?.length) throw new UsageError('missing --logins: the OS accounts this user may log in as, e.g. --logins=root,pi')
  },
  async run(admin, flags, args) {
    const user = await admin.client.call('POST /v1/users', { body: { name: args[0], logins: flags.logins, roles: flags.roles, signup_ttl_ms: flags.ttl } })
    await printInvitation(admin, user, flags.ttl, 'created')
  },
})

export const usersLs = ctlCommand({
  name: 'warrenctl users ls',
  summary: 'the users and their logins',
  flags: {},
  examples: ['warrenctl users ls'],
  async run(admin) {
    const { users } = await admin.client.call('GET /v1/users')
    out(
      formatTable(
        ['User', 'Roles', 'Logins'],
        users.map((u) => [u.name, u.roles.join(','), u.logins.join(',')]),
      ),
    )
  },
})

export const usersRm = ctlCommand({
  name: 'warrenctl users rm',
  summary: 'remove a user, its password, second factor and invitations, and end its sessions now',
  operands: ['NAME'],
  flags: {},
  description: 'Its certificates already issued are refused by a lock until they have expired (30 hours at most); "warrenctl lock ls" shows it.',
  examples: ['warrenctl users rm alice'],
  async run(admin, _flags, args) {
    const user = await admin.client.call('DELETE /v1/users/:name', { params: { name: args[0] } })
    out(`User ${user.name} has been removed and its sessions ended`)
  },
})

export const usersReset = ctlCommand({
  name: 'warrenctl users reset',
  summary: "void a user's password and second factor, and print a new invitation",
  operands: ['NAME'],
  flags: { ttl: TTL_FLAG },
  examples: ['warrenctl users reset alice'],
  async run(admin, flags, args) {
    const user = await admin.client.call('POST /v1/users/:name/reset', { params: { name: args[0] }, body: { signup_ttl_ms: flags.ttl } })
    await printInvitation(admin, user, flags.ttl, 'reset')
  },
})
