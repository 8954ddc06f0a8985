// The frame writer over a real TCP connection whose kernel buffers are kept small: who is
// served when output may go on again, and the write deadline, which a paced writer on a slow
// connection does not trip and one that takes nothing does.

import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { narrowTcpConnection, waitFor } from '../../test/helpers/yamux.ts'
import { limitUnsentBytes } from '../unsent-limit.ts'
import { FrameType, type YamuxError } from './const.ts'
import { FrameWriter } from './frame-writer.ts'

const KB = 1024

function fillUntilBlocked(writer: FrameWriter, frame: Buffer): void {
  while (!writer.blocked) writer.write(FrameType.Data, 0, 1, frame.length, frame)
}

t.test('waiters a drain did not serve go first next time, then the latest to wait', async (t) => {
  const { sender, receiver } = await narrowTcpConnection(t)
  receiver.pause()
  const writer = new FrameWriter(sender, 10_000, () => {})
  t.teardown(() => writer.stop())
  const frame = Buffer.alloc(256 * KB)
  fillUntilBlocked(writer, frame)
  const calls: string[] = []
  writer.whenWritable(() => calls.push('A'))
  // B fills the backlog again when served, so A waits for the next drain, and D begins to
  // wait then too.
  writer.whenWritable(() => {
    calls.push('B')
    fillUntilBlocked(writer, frame)
    writer.whenWritable(() => calls.push('D'))
  })
  writer.whenWritable(() => calls.push('C'))
  receiver.on('data', () => {})
  receiver.resume()
  await waitFor(() => calls.length >= 4, 10_000, 'two drains')
  t.same(calls, ['C', 'B', 'A', 'D'], 'the latest to wait first; then A, which B kept waiting, before D')
})

t.test('paced over a slow connection, output keeps waiting past the deadline without ending it', async (t) => {
  const { sender, receiver } = await narrowTcpConnection(t)
  // The kernel keeps little unsent, so that what it does not take waits in the writer.
  t.equal(await limitUnsentBytes(sender, 16 * KB), true)
  receiver.pause()
  let stuck: YamuxError | undefined
  const writer = new FrameWriter(sender, 1000, (error) => (stuck = error))
  writer.pace()
  t.teardown(() => writer.stop())
  // A stream with 4 MiB to send, writing whenever the writer lets it.
  const frame = Buffer.alloc(16 * KB)
  let left = 4096 * KB
  const send = (): void => {
    while (left > 0 && !writer.blocked) {
      writer.write(FrameType.Data, 0, 1, frame.length, frame)
      left -= frame.length
    }
    if (left > 0) writer.whenWritable(send)
  }
  send()
  // The reader takes what its socket holds (up to 64 KiB) every 200 ms: 4 MiB would take
  // over ten seconds, so output waits all along.
  let read = 0
  const reading = setInterval(() => (read += receiver.read()?.length ?? 0), 200)
  t.teardown(() => clearInterval(reading))
  await sleep(4000)
  t.equal(stuck, undefined, 'four seconds, four deadlines: kept')
  t.ok(read > 512 * KB && left > 0, `${read} bytes taken, ${left} still to send`)
  // Then the reader stops: nothing is taken, and the deadline ends it.
  clearInterval(reading)
  await waitFor(() => stuck !== undefined, 5000, 'the deadline')
  t.equal(stuck?.code, 'ERR_YAMUX_WRITE_TIMEOUT')
})
