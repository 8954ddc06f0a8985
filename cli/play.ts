// `warren play`: a recorded session replayed in this terminal at the speed it ran, from the
// asciicast v2 file the auth server keeps, fetched through a proxy for a user whose roles
// grant editor (recordings show whatever the session printed).

import { setTimeout as sleep } from 'node:timers/promises'
import { UsageError, WarrenError } from '../shared/errors.ts'
import { defineCommand } from './command.ts'
import { adminProxyApiClient } from './profile.ts'
import { credentialsDir, USER_FLAGS } from './reachable.ts'
import { TerminalFilter } from './terminal-filter.ts'

/**
 * Undoes what a recording may leave set of what the filter lets through, so the viewer's
 * prompt comes back as it was: attributes (SGR 0), the character set (SI, then ASCII as G0),
 * the normal screen, the cursor shown, line wrap, normal cursor keys and keypad, no
 * bracketed paste.
 */
export const RESET_TERMINAL = '\x1b[0m\x0f\x1b(B\x1b[?1049l\x1b[?25h\x1b[?7h\x1b[?1l\x1b>\x1b[?2004l'

export const playCommand = defineCommand({
  name: 'warren play',
  summary: 'replay a recorded session in this terminal',
  operands: ['SESSION_ID'],
  flags: { ...USER_FLAGS, speed: { type: 'string', placeholder: 'N', description: 'replay N times as fast (default: 1, as recorded)' } },
  description:
    'The session IDs are those of "warrenctl recordings ls" and of the session_id of the audit trail\'s session events. Reading recordings needs roles that grant editor.',
  examples: ['warren play 3b0c5d3e-5b0f-4c1e-9a53-2f1d7f0e4b21', 'warren play 3b0c5d3e-5b0f-4c1e-9a53-2f1d7f0e4b21 --speed=4'],
  async run(flags, args) {
    const speed = flags.speed === undefined ? 1 : Number(flags.speed)
    if (!Number.isFinite(speed) || speed <= 0) throw new UsageError(`--speed must be a number above 0, not "${flags.speed}"`)
    const client = adminProxyApiClient(credentialsDir(flags), flags.proxy)
    let cast: string
    try {
      cast = (await client.call('GET /v1/recordings/:id', { params: { id: args[0] } })).cast
    } finally {
      await client.close()
    }
    await replay(cast, speed, (text) => process.stdout.write(text))
    return 0
  },
})

/**
 * Writes each output event of an asciicast v2 file when it came, `speed` times as fast, with
 * what would make the terminal do more than draw taken out (terminal-filter.ts): the
 * recording holds whatever another user's session printed.
 */
export async function replay(cast: string, speed: number, write: (text: string) => void): Promise<void> {
  const [header, ...events] = cast.split('\n').filter((line) => line.length > 0)
  if ((JSON.parse(header ?? '{}') as { version?: number }).version !== 2) throw new WarrenError('the recording is not an asciicast v2 file')
  const filter = new TerminalFilter()
  let previous = 0
  try {
    for (const line of events) {
      const [time, kind, data] = JSON.parse(line) as [number, string, string]
      const pause = Math.max(0, time - previous) / speed
      previous = time
      if (pause > 0) await sleep(pause * 1000)
      // A size change cannot be made to this terminal; the output after it says enough.
      if (kind === 'o' && typeof data === 'string') {
        const safe = filter.push(data)
        if (safe !== '') write(safe)
      }
    }
  } finally {
    filter.end()
    write(RESET_TERMINAL)
  }
}
