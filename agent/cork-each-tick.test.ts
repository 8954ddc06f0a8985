// The writes of one tick reach the stream as one writev; the next tick's are a batch of their own.

import { Duplex } from 'node:stream'
import { setImmediate as nextLoop } from 'node:timers/promises'
import t from 'tap'
import { corkEachTick } from './cork-each-tick.ts'

function recordingStream(): { stream: Duplex; batches: string[][] } {
  const batches: string[][] = []
  const stream = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      batches.push([chunk.toString()])
      callback()
    },
    writev(chunks, callback) {
      batches.push(chunks.map(({ chunk }) => (chunk as Buffer).toString()))
      callback()
    },
  })
  return { stream, batches }
}

t.test('the pieces written in one tick leave together, in order', async (t) => {
  const { stream, batches } = recordingStream()
  corkEachTick(stream)
  for (const piece of ['len', 'ciphertext', 'tag', 'len2', 'ciphertext2', 'tag2']) stream.write(piece)
  t.same(batches, [], 'nothing leaves before the tick ends')
  await nextLoop()
  t.same(batches, [['len', 'ciphertext', 'tag', 'len2', 'ciphertext2', 'tag2']])
  stream.write('later')
  stream.write('again')
  await nextLoop()
  t.same(batches[1], ['later', 'again'], 'a later tick is a batch of its own')
})

t.test('without it, each write leaves on its own', async (t) => {
  const { stream, batches } = recordingStream()
  for (const piece of ['len', 'ciphertext', 'tag']) stream.write(piece)
  await nextLoop()
  t.ok(batches.length > 1, `${batches.length} batches`)
})

t.test('ending the stream in the same tick sends what was written first', async (t) => {
  const { stream, batches } = recordingStream()
  corkEachTick(stream)
  stream.write('last')
  stream.end('words')
  await new Promise((resolve) => stream.once('finish', resolve))
  t.same(batches.flat(), ['last', 'words'])
})
