// Turning V8's optimisers off and on again at run time, as an agent does: a hot function
// stays unoptimised while they are off and is optimised once they are back.

import { setFlagsFromString } from 'node:v8'
import t from 'tap'
import { deferOptimisingCompilers, optimisingCompilers, startOptimisingCompilers } from './optimising-compilers.ts'

setFlagsFromString('--allow-natives-syntax')
/** V8's OptimizationStatus bit for "optimised code" (Maglev or TurboFan). */
const OPTIMISED = 16
const status = new Function('f', 'return %GetOptimizationStatus(f)') as (f: () => number) => number

/** A fresh function (its own feedback) made hot: true once V8 optimised it, within `calls` calls. */
function optimisedWithin(calls: number): boolean {
  const data = new Uint8Array(4096).fill(7)
  const hot = new Function('data', 'let s = 0; for (let i = 0; i < data.length; i++) s = (s + data[i] * 31) | 0; return s') as (d: Uint8Array) => number
  const call = () => hot(data)
  for (let i = 0; i < calls; i++) {
    call()
    if (status(hot as () => number) & OPTIMISED) return true
  }
  return false
}

t.test('a process that never deferred them has them on', async (t) => {
  t.equal(optimisingCompilers(), 'on')
  startOptimisingCompilers()
  t.equal(optimisingCompilers(), 'on')
})

t.test('deferred, a hot function stays unoptimised; started, it is optimised', async (t) => {
  deferOptimisingCompilers()
  t.equal(optimisingCompilers(), 'off until the first stream')
  t.notOk(optimisedWithin(20_000), 'not optimised while they are off')
  startOptimisingCompilers()
  t.equal(optimisingCompilers(), 'on')
  t.ok(optimisedWithin(200_000), 'optimised once they are on')
})
