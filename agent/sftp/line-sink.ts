// Where an SFTP server's standard error goes: each line to the node's log. The server runs as
// the login, so a line longer than MAX_LINE is dropped rather than held.

import { Writable } from 'node:stream'
import { StringDecoder } from 'node:string_decoder'

/** The longest line read from an SFTP server's standard error; a longer one is dropped. */
export const MAX_LINE = 16 * 1024

export function lineSink(line: (text: string) => void): Writable {
  const decoder = new StringDecoder('utf8')
  let partial = ''
  let overlong = false
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      const lines = (partial + decoder.write(chunk)).split('\n')
      partial = lines.pop()!
      for (const text of lines) {
        // A line whose end came in this chunk is held to MAX_LINE too.
        if (!overlong && text.length <= MAX_LINE) line(text.replace(/\r$/, ''))
        overlong = false
      }
      if (partial.length > MAX_LINE) {
        partial = ''
        overlong = true
      }
      done()
    },
  })
}
