import t from 'tap'
import { HELLO_BURST, HELLO_EVERY_MS, HelloRate } from './hello-rate.ts'

t.test('a host registers HELLO_BURST tunnels at once, then one every HELLO_EVERY_MS; each host has its own bucket', async (t) => {
  let now = 1_000_000
  const rate = new HelloRate(() => now)
  for (let i = 0; i < HELLO_BURST; i++) t.equal(rate.take('h'), undefined, `hello ${i + 1} of the burst`)
  t.same(rate.take('h'), { waitMs: HELLO_EVERY_MS, log: true }, 'past the burst: refused, with the wait, logged')
  t.same(rate.take('h'), { waitMs: HELLO_EVERY_MS, log: false }, 'the next refusal within a minute is not logged')
  t.equal(rate.take('other'), undefined, 'another host is not held back')
  now += HELLO_EVERY_MS / 2
  t.same(rate.take('h'), { waitMs: HELLO_EVERY_MS / 2, log: false }, 'half refilled')
  now += HELLO_EVERY_MS / 2
  t.equal(rate.take('h'), undefined, 'one more after HELLO_EVERY_MS')
  t.ok(rate.take('h'), 'and not two')
  now += 60_000
  for (let i = 0; i < HELLO_BURST; i++) t.equal(rate.take('h'), undefined, 'refilled to the burst, no further')
  t.same(rate.take('h'), { waitMs: HELLO_EVERY_MS, log: true }, 'a refusal a minute on is logged again')
})
