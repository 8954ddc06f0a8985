// What a tunnel does on a slow link, the same on both ends: when its session finds the link
// slow (long waits for the peer's window), the kernel's queue for the connection is kept
// short and the session paces its output, so that one stream's bulk data does not hold the
// others' frames back for seconds (`npm run bench:slow-link`).

import type { Socket } from 'node:net'
import { limitUnsentBytes, UNSENT_LIMIT_BYTES } from './unsent-limit.ts'
import type { Session } from './yamux/index.ts'

/**
 * 'off' until the link is found slow; then 'on', or 'unavailable' when the kernel's queue
 * could not be limited (no perl), where pacing would only add waits of its own.
 */
export type Pacing = 'off' | 'on' | 'unavailable'

/** Paces `session` over `socket` once it finds its link slow; `set` learns the new state. */
export function paceWhenSlow(session: Session, socket: Socket, set: (pacing: Pacing) => void): void {
  session.once('slow', () => {
    limitUnsentBytes(socket, UNSENT_LIMIT_BYTES)
      .then((limited) => {
        if (limited) session.paceOutput()
        set(limited ? 'on' : 'unavailable')
      })
      .catch(() => set('unavailable'))
  })
}
