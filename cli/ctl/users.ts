// `warrenctl users add` and `users ls`: the users and the OS logins their certificates may use.

import { UsageError } from '../../shared/errors.ts'
import { formatTable } from '../table.ts'
import { ctlCommand, out } from './ctl-command.ts'

export const usersAdd = ctlCommand({
  name: 'warrenctl users add',
  summary: 'add a user who may log in to nodes as these OS accounts',
  operands: ['NAME'],
  flags: {
    logins: { type: 'list', noun: 'login', description: 'OS accounts the user may log in as (required)' },
    roles: { type: 'list', noun: 'role', description: 'roles that decide which nodes, logins and ports the user reaches (default access)' },
  },
  examples: ['warrenctl users add alice --logins=root,pi', 'warrenctl users add bob --logins=pi --roles=access,editor'],
  async run(admin, flags, args) {
    if (!flags.logins?.length) throw new UsageError('missing --logins: the OS accounts this user may log in as, e.g. --logins=root,pi')
    const user = await admin.client.call('POST /v1/users', { body: { name: args[0], logins: flags.logins, roles: flags.roles } })
    out(`User ${user.name} has been added with logins ${user.logins.join(',')} and roles ${user.roles.join(',')}`)
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
