// The admin routes for roles of people: `warrenctl create -f role.yaml` (create or
// replace), `get roles` and `rm role/NAME`.

import { NO_BODY, SMALL_BODY } from '../../shared/api-router.ts'
import { actorOf } from '../audit.ts'
import { parseRole } from '../role-spec.ts'
import { BUILT_IN_ROLES } from '../user-roles.ts'
import type { AuthRoutes } from './context.ts'

export const roleRoutes = {
  'POST /v1/roles': {
    access: 'admin',
    bodyLimit: SMALL_BODY,
    async handle(call, context) {
      const role = parseRole(await call.body())
      const { created } = await context.roles.put(role)
      context.log.info(created ? 'role created' : 'role replaced', { role: role.metadata.name })
      await context.audit.record('role.created', { role: role.metadata.name, replaced: !created, actor: actorOf(call.peer) })
      return { name: role.metadata.name, created }
    },
  },

  'GET /v1/roles': {
    access: 'admin',
    bodyLimit: NO_BODY,
    handle: async (_call, context) => ({ roles: await context.roles.list(), built_in: BUILT_IN_ROLES.map((role) => role.metadata.name) }),
  },

  'DELETE /v1/roles/:name': {
    access: 'admin',
    bodyLimit: NO_BODY,
    async handle(call, context) {
      await context.roles.remove(call.params.name)
      context.log.info('role removed', { role: call.params.name })
      await context.audit.record('role.removed', { role: call.params.name, actor: actorOf(call.peer) })
      return { name: call.params.name }
    },
  },
} satisfies Partial<AuthRoutes>
