// The admin routes for join tokens: `warrenctl tokens ls`, `tokens add` (and `nodes add`),
// `tokens rm`.

import { NO_BODY, SMALL_BODY } from '../../shared/api-router.ts'
import { nodenameProblem } from '../../shared/nodename.ts'
import { ProtocolError } from '../../shared/protocol/errors.ts'
import { formatLabels } from '../../shared/selectors.ts'
import { actorOf } from '../audit.ts'
import { parseRoles } from '../roles.ts'
import type { AuthRoutes } from './context.ts'

export const tokenRoutes = {
  'GET /v1/tokens': {
    access: 'admin',
    bodyLimit: NO_BODY,
    async handle(_call, context) {
      const list = await context.tokens.list()
      return {
        tokens: list.map((t) => ({
          id: t.id,
          roles: t.roles,
          expires: t.expires ?? null,
          single_use: t.singleUse,
          static: t.static,
          value: t.value ?? null,
          nodename: t.nodename ?? null,
          user: t.user ?? null,
          labels: t.labels ?? {},
        })),
      }
    },
  },

  'POST /v1/tokens': {
    access: 'admin',
    bodyLimit: SMALL_BODY,
    async handle(call, context) {
      const body = await call.body()
      let roles
      try {
        roles = parseRoles(body.roles)
      } catch (error) {
        throw new ProtocolError(call.route, 'roles', (error as Error).message)
      }
      if (roles.includes('signup'))
        throw new ProtocolError(call.route, 'roles', 'sign-up tokens come with their user: "warrenctl users add NAME" (or "users reset NAME") makes one')
      const { nodename } = body
      const problem = nodename === undefined ? undefined : nodenameProblem(nodename)
      if (problem) throw new ProtocolError(call.route, 'nodename', problem)
      if (nodename !== undefined && !roles.includes('node')) throw new ProtocolError(call.route, 'nodename', 'field "nodename" is for tokens that grant the node role')
      const labels = body.labels
      if (Object.keys(labels).length > 0 && !roles.includes('node')) throw new ProtocolError(call.route, 'labels', 'field "labels" is for tokens that grant the node role')
      const { value, record } = await context.tokens.add({ roles, ttlMs: body.ttl_ms, singleUse: body.single_use, value: body.token, nodename, labels })
      context.log.info('token created', { id: record.id, roles: roles.join(','), single_use: record.singleUse, ...(record.nodename ? { nodename: record.nodename } : {}) })
      await context.audit.record('token.created', {
        token_id: record.id,
        roles: roles.join(','),
        single_use: record.singleUse,
        expires: record.expires,
        node: record.nodename,
        labels: record.labels ? formatLabels(record.labels) : undefined,
        actor: actorOf(call.peer),
      })
      return { token: value, id: record.id, roles, expires: record.expires!, single_use: record.singleUse, nodename: record.nodename ?? null, labels: record.labels ?? {} }
    },
  },

  'DELETE /v1/tokens/:token': {
    access: 'admin',
    bodyLimit: NO_BODY,
    async handle(call, context) {
      const record = await context.tokens.remove(call.params.token)
      context.log.info('token deleted', { id: record.id })
      await context.audit.record('token.removed', { token_id: record.id, actor: actorOf(call.peer) })
      return { id: record.id }
    },
  },
} satisfies Partial<AuthRoutes>
