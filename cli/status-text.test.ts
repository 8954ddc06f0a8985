// A CA's line in `warren status` and `warrenctl status`: whether it has expired is the auth
// server's word, by the clock that decides what it signs, not the clock of the host reading
// it; an auth server of an earlier version does not say, and the reader's clock decides.

import t from 'tap'
import { caExpiryText } from './status-text.ts'

const DAY = 86_400_000
const now = Date.UTC(2036, 11, 1, 12)

t.test("a CA's expiry as the auth server judges it", async (t) => {
  const expired = /^EXPIRED 05 Dec 36 12:00 UTC: it signs nothing until rotated \(warrenctl auth rotate --type=user\)$/
  const expires = Date.UTC(2036, 11, 5, 12)
  t.equal(caExpiryText(expires, false, now, 'user'), 'expires 05 Dec 36 12:00 UTC (in 4 days: rotate it before then)')
  t.match(caExpiryText(expires, true, now, 'user'), expired, "expired by the server's clock, which runs ahead of this one")
  t.equal(caExpiryText(expires, false, now + 5 * DAY, 'user'), 'expires 05 Dec 36 12:00 UTC (in 0 days: rotate it before then)', "not by the server's, which runs behind")
  t.match(caExpiryText(expires, undefined, now + 5 * DAY, 'user'), expired, 'an earlier auth server does not say: by this clock')
  t.equal(caExpiryText(expires, undefined, now, 'host'), 'expires 05 Dec 36 12:00 UTC (in 4 days: rotate it before then)')
  t.equal(caExpiryText(Date.UTC(2046, 11, 3, 12), false, now, 'host'), 'expires 03 Dec 46 12:00 UTC', 'years away: no days counted')
})
