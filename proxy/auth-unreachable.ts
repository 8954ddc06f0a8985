// What a caller of the proxy is told when the auth server behind it does not answer: that it
// does not, and no more. The reason names the auth server's address inside the cluster's
// network (and how it failed), which is the operator's to read in the proxy's log, not
// something to hand to anyone on the internet who asks for the CA.

import { HttpError } from '../shared/api-router.ts'
import { ApiError } from '../shared/errors.ts'
import type { Logger } from '../shared/log.ts'

/** An auth server's own answer as it is; any other failure logged and made a plain 502. */
export function authFailure(error: unknown, log: Logger): Error {
  if (error instanceof ApiError) return error
  log.warn(`the auth server cannot be reached: ${(error as Error).message}`)
  return new HttpError(502, 'the auth server cannot be reached')
}
