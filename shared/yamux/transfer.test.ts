// Byte-exact bulk transfer over a real TCP connection: whatever way TCP cuts the bytes,
// every stream delivers exactly what was written, in both directions at once.

import t from 'tap'
import { receiveHash, sendRandom, tcpPair } from '../../test/helpers/yamux.ts'
import type { Stream } from './stream.ts'

const MB = 1024 * 1024

/** Both ends write `bytes` on the stream and read the other's; digests must match. */
async function exchange(local: Stream, remote: Stream, bytes: number, seed: number): Promise<void> {
  const [sentUp, sentDown, gotUp, gotDown] = await Promise.all([
    sendRandom(local, bytes, 128 * 1024, seed),
    sendRandom(remote, bytes, 128 * 1024, seed + 1),
    receiveHash(remote),
    receiveHash(local),
  ])
  if (gotUp.bytes !== bytes || gotUp.digest !== sentUp) {
    throw new Error(`stream ${local.id} upstream: ${gotUp.bytes} bytes, digest ${gotUp.digest} != ${sentUp}`)
  }
  if (gotDown.bytes !== bytes || gotDown.digest !== sentDown) {
    throw new Error(`stream ${local.id} downstream: ${gotDown.bytes} bytes, digest ${gotDown.digest} != ${sentDown}`)
  }
}

function acceptInto(pair: { server: { on(e: 'stream', fn: (s: Stream) => void): unknown } }): Map<number, Stream> {
  const accepted = new Map<number, Stream>()
  pair.server.on('stream', (s: Stream) => accepted.set(s.id, s))
  return accepted
}

t.test('100 MiB each way on one stream, random write sizes', async (t) => {
  const pair = await tcpPair()
  const accepted = acceptInto(pair)
  const first = new Promise<Stream>((resolve) => pair.server.once('stream', resolve))
  const stream = pair.client.open()
  const remote = await first
  await exchange(stream, remote, 100 * MB, 1)
  t.equal(accepted.size, 1)
  t.equal(pair.client.numStreams, 0, 'both FINs exchanged: the stream is gone on the client')
  t.equal(pair.server.numStreams, 0, 'and on the server')
  await pair.close()
})

t.test('64 concurrent streams, 2 MiB each way on each (128 MiB each way in all)', async (t) => {
  const pair = await tcpPair()
  const accepted = acceptInto(pair)
  const streams = Array.from({ length: 64 }, () => pair.client.open())
  await new Promise<void>((resolve) => {
    const check = (): void => {
      if (accepted.size === 64) resolve()
      else setTimeout(check, 2)
    }
    check()
  })
  await Promise.all(streams.map((s, i) => exchange(s, accepted.get(s.id)!, 2 * MB, 100 + i * 2)))
  t.equal(pair.client.numStreams, 0)
  t.equal(pair.server.numStreams, 0)
  await pair.close()
})
