// A join the auth server asks to wait (429 with Retry-After): tried again after the wait it
// gave, never for other refusals, and given up once the waits would pass the limit.

import t from 'tap'
import { whileTooMany } from './enroll.ts'
import { ApiError } from './errors.ts'
import { createLogger } from './log.ts'

const log = createLogger('test', { level: 'error' })

t.test('tried again after each wait the server asks for, until it succeeds', async (t) => {
  let calls = 0
  const value = await whileTooMany(log, async () => {
    if (++calls < 3) throw new ApiError(429, 'too many join attempts', 0)
    return 'joined'
  })
  t.equal(value, 'joined')
  t.equal(calls, 3)
})

t.test('other refusals, and a 429 without a time to wait, are not tried again', async (t) => {
  for (const error of [new ApiError(401, 'token expired or not found'), new ApiError(429, 'busy'), new Error('cannot reach')]) {
    let calls = 0
    await t.rejects(
      whileTooMany(log, async () => {
        calls++
        throw error
      }),
      error,
    )
    t.equal(calls, 1, error.message)
  }
})

t.test('given up when the wait would pass the limit', async (t) => {
  let calls = 0
  await t.rejects(
    whileTooMany(
      log,
      async () => {
        calls++
        throw new ApiError(429, 'too many join attempts', 60)
      },
      30_000,
    ),
    /too many join attempts/,
  )
  t.equal(calls, 1, 'tried once: a wait of 60 s or more would pass the limit of 30 s')
})
