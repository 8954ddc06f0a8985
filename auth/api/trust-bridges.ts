// The bridges out of dropped host CAs (auth/rotation.ts), for nodes that were away through a
// host CA rotation: public, since such a node cannot verify any server of the cluster any
// more. What it gets is CA certificates and signatures; it believes the signatures alone.

import { NO_BODY } from '../../shared/api-router.ts'
import { PIN_PATTERN } from '../../shared/protocol/bridges.ts'
import { ProtocolError } from '../../shared/protocol/errors.ts'
import { readBridges, trustStatement } from '../trust.ts'
import type { AuthRoutes } from './context.ts'

export const trustBridgeRoutes = {
  'GET /v1/trust/bridges': {
    access: 'public',
    bodyLimit: NO_BODY,
    async handle(call, context) {
      const pin = call.query.get('pin')
      if (pin === null) throw new ProtocolError(call.route, 'pin', 'query parameter "pin" is required')
      if (!PIN_PATTERN.test(pin)) throw new ProtocolError(call.route, 'pin', 'query parameter "pin" must be sha256: followed by 64 lower-case hex digits')
      return { bridges: await readBridges(context.backend, pin), trust: trustStatement(context.clusterName, context.hostCA(), context.userCA()) }
    },
  },
} satisfies Partial<AuthRoutes>
