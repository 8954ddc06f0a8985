// A raw client of the one-line dial protocol (shared/protocol/dial.ts) for tests that send
// what no Warren client would: a request forged past the proxy straight to a direct node,
// or a user request to a proxy with a certificate of someone else. It sends `request`,
// reads the reply line, and when the stream opened sends `payload` and collects what an
// echo server sends back.

import { type ConnectionOptions, connect } from 'node:tls'

export interface LineDialResult {
  /** The reply line, parsed: `{ ok: true }` or `{ ok: false, error }`. */
  reply?: { ok: boolean; error?: string }
  /** What came after the reply, until `payload` came back or the stream closed. */
  echoed: string
  error?: string
}

export function lineDial(options: ConnectionOptions, request: object, payload = 'ping'): Promise<LineDialResult> {
  return new Promise((resolve) => {
    const result: LineDialResult = { echoed: '' }
    const socket = connect(options)
    let received = ''
    const done = () => {
      clearTimeout(timer)
      socket.destroy()
      resolve(result)
    }
    const timer = setTimeout(() => {
      result.error = 'no answer within 15 s'
      done()
    }, 15_000)
    socket.once('secureConnect', () => socket.write(JSON.stringify(request) + '\n'))
    socket.on('data', (chunk: Buffer) => {
      if (result.reply) {
        result.echoed += chunk.toString('utf8')
        if (result.echoed.length >= payload.length) done()
        return
      }
      received += chunk.toString('utf8')
      const end = received.indexOf('\n')
      if (end < 0) return
      result.reply = JSON.parse(received.slice(0, end)) as LineDialResult['reply']
      result.echoed = received.slice(end + 1)
      if (result.reply?.ok) socket.write(payload)
    })
    socket.on('error', (error) => {
      result.error = error.message
    })
    socket.on('close', done)
  })
}
