// The clock watch with injected clocks: a step of the wall clock against the monotonic one,
// either way, is reported with its size; the drift of a few seconds between two checks is not.

import t from 'tap'
import { CLOCK_CHECK_MS, CLOCK_STEP_MS, ClockWatch } from './clock-watch.ts'

t.test('steps of the wall clock are told, forward and back; small drift is not', async (t) => {
  let wall = Date.UTC(2027, 0, 1)
  let mono = 1000
  const steps: number[] = []
  let ticks = 0
  const watch = new ClockWatch({ stepped: (byMs) => steps.push(byMs), tick: () => ticks++, wall: () => wall, monotonic: () => mono })
  const pass = (ms: number, stepMs = 0) => {
    mono += ms
    wall += ms + stepMs
    watch.check()
  }
  pass(CLOCK_CHECK_MS)
  pass(CLOCK_CHECK_MS, CLOCK_STEP_MS)
  pass(CLOCK_CHECK_MS, -CLOCK_STEP_MS)
  t.same(steps, [], 'no step: the clocks ran together, or drifted by a few seconds')
  pass(CLOCK_CHECK_MS, 8 * 86_400_000)
  pass(CLOCK_CHECK_MS, -3_600_000)
  t.same(steps, [8 * 86_400_000, -3_600_000], 'a step forward and one back, each with its size')
  t.equal(ticks, 5, 'a tick at every check')
})
