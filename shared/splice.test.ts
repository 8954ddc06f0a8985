// A splice passes bytes and ends both ways, batches what a loop turn brings (all but a small
// first piece), and pauses its source only once the destination holds BACKLOG_BYTES, not at
// the stream's own mark of one read.

import { once } from 'node:events'
import { connect, createServer } from 'node:net'
import { Duplex, PassThrough, Writable } from 'node:stream'
import { setImmediate as nextLoop } from 'node:timers/promises'
import t from 'tap'
import { BACKLOG_BYTES, forward, PARKED_BUDGET_BYTES, SMALL_PIECE_BYTES, splice } from './splice.ts'

/** A destination that keeps every write's callback until `release`. */
function heldWritable(): { stream: Writable; received: Buffer[]; release: () => void } {
  const received: Buffer[] = []
  let held: (() => void)[] = []
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      received.push(chunk)
      held.push(callback)
    },
  })
  const release = () => {
    const callbacks = held
    held = []
    for (const callback of callbacks) callback()
  }
  return { stream, received, release }
}

t.test('the source reads on while the destination holds less than the backlog', async (t) => {
  const from = new PassThrough()
  const { stream: to, received, release } = heldWritable()
  forward(from, to)
  const chunk = Buffer.alloc(64 * 1024, 1)
  const chunksBelow = BACKLOG_BYTES / chunk.length - 1
  for (let i = 0; i < chunksBelow; i++) from.write(chunk)
  await nextLoop()
  t.ok(to.writableLength > to.writableHighWaterMark, 'the destination holds more than its own mark')
  t.equal(from.isPaused(), false, 'below the backlog the source is not paused')

  from.write(chunk)
  await nextLoop()
  t.equal(to.writableLength, BACKLOG_BYTES)
  t.equal(from.isPaused(), true, 'at the backlog the source is paused')

  // Drained, the source flows again and nothing was lost or reordered.
  while (to.writableLength > 0) {
    release()
    await nextLoop()
  }
  t.equal(from.isPaused(), false, 'drained, the source reads again')
  from.write(Buffer.from('last'))
  await nextLoop()
  release()
  t.equal(Buffer.concat(received).length, BACKLOG_BYTES + 4)
  t.equal(Buffer.concat(received).subarray(-4).toString(), 'last')
})

t.test("past the process's budget for paused splices, a splice pauses at its destination's own mark", async (t) => {
  const chunk = Buffer.alloc(64 * 1024, 1)
  /** A splice whose destination reads nothing, fed until its source pauses. */
  const stalled = async () => {
    const from = new PassThrough()
    const held = heldWritable()
    forward(from, held.stream)
    while (!from.isPaused()) {
      from.write(chunk)
      await nextLoop()
    }
    return { from, ...held }
  }
  const full: Awaited<ReturnType<typeof stalled>>[] = []
  for (let i = 0; i < PARKED_BUDGET_BYTES / BACKLOG_BYTES; i++) full.push(await stalled())
  t.ok(
    full.every(({ stream }) => stream.writableLength === BACKLOG_BYTES),
    'within the budget each holds the backlog',
  )
  const next = await stalled()
  t.ok(next.stream.writableLength < BACKLOG_BYTES / 4, `past it the next holds only its mark (${next.stream.writableLength} bytes)`)

  // One drained, and one destroyed: the budget is theirs again.
  while (full[0]!.stream.writableLength > 0) {
    full[0]!.release()
    await nextLoop()
  }
  full[1]!.stream.destroy()
  await nextLoop()
  const again = await stalled()
  t.equal(again.stream.writableLength, BACKLOG_BYTES, 'with room again, the backlog')
  for (const { stream } of [...full, next, again]) stream.destroy()
  await nextLoop()
})

/** A destination that records what each write to it carried. */
function recordingWritable(): { stream: Writable; writes: string[][] } {
  const writes: string[][] = []
  const stream = new Writable({
    writev(chunks, callback) {
      writes.push(chunks.map(({ chunk }) => chunk.toString()))
      callback()
    },
  })
  return { stream, writes }
}

t.test("a loop turn's small first piece is written at once, and the rest of the turn together at its check phase", async (t) => {
  const from = new PassThrough()
  const { stream: to, writes } = recordingWritable()
  forward(from, to)
  await nextLoop() // the source flows
  from.write('a')
  from.write('b')
  from.write('c')
  t.same(writes, [['a']], 'the first piece left at once')
  await nextLoop()
  t.same(writes, [['a'], ['b', 'c']], 'the rest of the turn in one write')
  from.write('d')
  t.same(writes.at(-1), ['d'], "the next turn's first piece left at once")
})

t.test("a loop turn's large first piece waits for the check phase with the rest", async (t) => {
  const from = new PassThrough()
  const { stream: to, writes } = recordingWritable()
  forward(from, to)
  await nextLoop()
  const large = 'x'.repeat(SMALL_PIECE_BYTES + 1)
  from.write(large)
  from.write('b')
  t.same(writes, [], 'nothing left before the check phase')
  await nextLoop()
  t.same(writes, [[large, 'b']], 'the turn in one write')
})

t.test('an end passes on to the destination', async (t) => {
  const from = new PassThrough()
  const to = new PassThrough()
  forward(from, to)
  from.end('bye')
  const chunks: Buffer[] = []
  for await (const chunk of to) chunks.push(chunk as Buffer)
  t.equal(Buffer.concat(chunks).toString(), 'bye')
})

t.test('two sockets spliced carry bytes both ways, half-closed, and a failure closes both', async (t) => {
  // An echo server that answers after its client has ended its side.
  const echo = createServer({ allowHalfOpen: true }, (socket) => {
    const chunks: Buffer[] = []
    socket.on('data', (chunk) => chunks.push(chunk))
    socket.on('end', () => socket.end(Buffer.concat(chunks)))
  })
  echo.listen(0, '127.0.0.1')
  await once(echo, 'listening')
  const front = createServer({ allowHalfOpen: true }, (client) => {
    const back = connect({ port: (echo.address() as { port: number }).port, host: '127.0.0.1', allowHalfOpen: true })
    splice(client, back)
  })
  front.listen(0, '127.0.0.1')
  await once(front, 'listening')
  t.teardown(() => {
    front.close()
    echo.close()
  })
  const port = (front.address() as { port: number }).port

  const payload = Buffer.alloc(3 * BACKLOG_BYTES, 7)
  const client = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
  client.end(payload)
  const answer: Buffer[] = []
  for await (const chunk of client) answer.push(chunk as Buffer)
  t.ok(Buffer.concat(answer).equals(payload), 'the whole payload came back after the half-close')

  // One side fails: the other is destroyed too.
  const a = new Duplex({ read() {}, write: (_c, _e, cb) => cb() })
  const b = new Duplex({ read() {}, write: (_c, _e, cb) => cb() })
  splice(a, b)
  a.on('error', () => {})
  a.destroy(new Error('reset'))
  await nextLoop()
  t.equal(b.destroyed, true)
})
