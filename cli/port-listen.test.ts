import { once } from 'node:events'
import { connect } from 'node:net'
import t from 'tap'
import { listenAndDial } from './port-listen.ts'

/** Runs `listenAndDial` with `dial`, connects once, and returns what it wrote to standard error. */
async function stderrOfOneRefusedConnection(dial: () => Promise<never>): Promise<string> {
  const written: string[] = []
  const stdoutWrite = process.stdout.write
  const stderrWrite = process.stderr.write
  let listening: (port: number) => void = () => {}
  const port = new Promise<number>((resolve) => {
    listening = resolve
  })
  process.stdout.write = ((text: string) => {
    const match = /listening on 127\.0\.0\.1:(\d+)/.exec(text)
    if (!match) return stdoutWrite.call(process.stdout, text)
    listening(Number(match[1]))
    return true
  }) as typeof process.stdout.write
  process.stderr.write = ((text: string) => {
    written.push(text)
    return true
  }) as typeof process.stderr.write
  try {
    const running = listenAndDial({ host: '127.0.0.1', port: 0 }, dial)
    const client = connect(await port, '127.0.0.1')
    client.on('error', () => {})
    await once(client, 'close')
    process.emit('SIGTERM', 'SIGTERM')
    await running
  } finally {
    process.stdout.write = stdoutWrite
    process.stderr.write = stderrWrite
  }
  return written.join('')
}

t.test("a refusal's message from the network is printed escaped, never acted on by the terminal", async (t) => {
  const hostile = 'dial refused\x1b]0;owned\x07\x1b[2J\r\nwarren: all fine\u202e'
  const told = await stderrOfOneRefusedConnection(() => Promise.reject(new Error(hostile)))
  t.match(told, /^connection from 127\.0\.0\.1:\d+ closed: dial refused/)
  t.notOk(/[\x00-\x09\x0b-\x1f\x7f\u202e]/.test(told), 'no control or reordering character reaches standard error')
  t.equal(told.split('\n').length, 2, 'one line, ended once')
  t.ok(told.includes('\\x1b]0;owned\\x07\\x1b[2J\\x0d\\x0awarren: all fine\\u202e'), 'every character shown as an escape')
})
