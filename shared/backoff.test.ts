import t from 'tap'
import { Backoff } from './backoff.ts'

t.test('the window doubles up to the cap, and the delay is drawn from all of it', (t) => {
  const top = new Backoff({ baseMs: 100, capMs: 1000, random: () => 0.999999 })
  t.same([top.next(), top.next(), top.next(), top.next(), top.next(), top.next()], [99, 199, 399, 799, 999, 999])
  const bottom = new Backoff({ baseMs: 100, capMs: 1000, random: () => 0 })
  t.equal(bottom.next(), 0, 'full jitter reaches zero')
  top.reset()
  t.equal(top.next(), 99, 'reset starts over')
  t.equal(top.attempts, 1)
  t.end()
})
