// A CA's certificate lives ten years (shared/x509.ts createCA). Every certificate it signs
// ends no later (Authority.capValidBefore), and on that day every peer refuses them all:
// tunnels and logins stop at once, and the CA signs nothing more (CAExpired). The auth
// server still starts, and warrenctl on its host still reaches it (auth/own-credentials.ts:
// a stand-in signs the server's own certificates), so that a rotation, which gives the CA a
// new certificate, can be made even then. The auth server warns from a year before, once a
// day, so that an operator rotates in time; `warrenctl status` and `warren status` show the
// date, and `warren_auth_ca_expiry_timestamp_seconds` lets an alert watch it.

import { isoTime } from '../shared/duration.ts'
import type { Logger } from '../shared/log.ts'
import type { Authority, AuthorityType } from './authorities.ts'

const DAY_MS = 24 * 3600_000
/** Warned of from this long before: time for a rotation's grace periods with room to spare. */
export const CA_EXPIRY_WARN_MS = 365 * DAY_MS
/** Once a day: a reminder, not noise. */
export const CA_EXPIRY_WARN_EVERY_MS = DAY_MS

export class CAExpiryWarnings {
  readonly #log: Logger
  readonly #clock: () => number
  readonly #warnedAt = new Map<AuthorityType, number>()

  constructor(log: Logger, clock: () => number = Date.now) {
    this.#log = log
    this.#clock = clock
  }

  /** Warns when `ca`'s signing certificate ends within a year, at most once a day per CA. */
  check(ca: Authority): void {
    const now = this.#clock()
    const left = ca.signingExpires - now
    if (left > CA_EXPIRY_WARN_MS) {
      this.#warnedAt.delete(ca.type)
      return
    }
    const last = this.#warnedAt.get(ca.type)
    if (last !== undefined && now - last < CA_EXPIRY_WARN_EVERY_MS) return
    this.#warnedAt.set(ca.type, now)
    const fields = { ca: ca.type, ca_expires: isoTime(ca.signingExpires), ca_expires_in_days: Math.floor(left / DAY_MS) }
    const rotate = `warrenctl auth rotate --type=${ca.type}`
    if (left <= 0) this.#log.error(`the ${ca.type} CA's certificate has expired: no peer accepts what it signs; ${rotate} gives it a new one`, fields)
    else this.#log.warn(`the ${ca.type} CA's certificate expires in ${fields.ca_expires_in_days} days: rotate it before then (${rotate})`, fields)
  }
}
