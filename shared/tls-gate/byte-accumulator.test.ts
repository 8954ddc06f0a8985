import t from 'tap'
import { ByteAccumulator } from './byte-accumulator.ts'

t.test('the bytes appended, in order, from a start or none', async (t) => {
  const empty = new ByteAccumulator()
  let all: Buffer = Buffer.alloc(0)
  for (let i = 0; i < 2000; i++) all = empty.append(Buffer.from([i % 256]))
  t.same(
    [...all],
    Array.from({ length: 2000 }, (_, i) => i % 256),
  )
  const started = new ByteAccumulator(Buffer.from('PROXY'))
  t.equal(started.append(Buffer.from(' TCP4')).toString(), 'PROXY TCP4')
  t.equal(started.append(Buffer.alloc(0)).toString(), 'PROXY TCP4', 'an empty chunk changes nothing')
})
