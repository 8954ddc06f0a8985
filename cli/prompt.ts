// Questions for the person at the terminal: a line typed in, or a secret with echo off.
// When standard input is not a terminal, each answer is the next line of it (one a line),
// so that a script, or a test, can answer; questions still go to standard error.

import { createInterface, type Interface } from 'node:readline'
import { WarrenError } from '../shared/errors.ts'

export class Prompter {
  private readonly input: NodeJS.ReadStream
  private readonly output: NodeJS.WriteStream
  private lines?: AsyncIterator<string>

  constructor(input: NodeJS.ReadStream = process.stdin, output: NodeJS.WriteStream = process.stderr) {
    this.input = input
    this.output = output
  }

  get isTerminal(): boolean {
    return this.input.isTTY === true
  }

  /** A visible answer. */
  async ask(question: string): Promise<string> {
    if (!this.isTerminal) return this.nextLine(question)
    const rl = createInterface({ input: this.input, output: this.output, terminal: true })
    try {
      return await new Promise<string>((resolve) => rl.question(question, resolve))
    } finally {
      rl.close()
    }
  }

  /** An answer not shown as it is typed. */
  async secret(question: string): Promise<string> {
    if (!this.isTerminal) return this.nextLine(question)
    const input = this.input
    // Echo off before the question shows: nothing typed after it is echoed.
    input.setRawMode(true)
    input.resume()
    this.output.write(question)
    try {
      return await new Promise<string>((resolve, reject) => {
        let typed = ''
        const onData = (chunk: Buffer) => {
          for (const char of chunk.toString('utf8')) {
            if (char === '\r' || char === '\n') {
              input.off('data', onData)
              this.output.write('\n')
              return resolve(typed)
            }
            if (char === '\u0003' || char === '\u0004') {
              input.off('data', onData)
              this.output.write('\n')
              return reject(new WarrenError('cancelled'))
            }
            if (char === '\u007f' || char === '\b') typed = [...typed].slice(0, -1).join('')
            else typed += char
          }
        }
        input.on('data', onData)
      })
    } finally {
      input.setRawMode(false)
      input.pause()
    }
  }

  private async nextLine(question: string): Promise<string> {
    this.output.write(question)
    this.lines ??= (createInterface({ input: this.input, terminal: false }) as Interface)[Symbol.asyncIterator]()
    const next = await this.lines.next()
    this.output.write('\n')
    if (next.done) throw new WarrenError(`no answer on standard input to "${question.trim()}"`)
    return next.value
  }
}
