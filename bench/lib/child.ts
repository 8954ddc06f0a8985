// Helper processes of the benchmarks (echo server, relays, simulated agents): Node scripts
// run with the same Node, each announcing itself with one JSON line on standard output.

import { type ChildProcess, spawn } from 'node:child_process'
import { createInterface } from 'node:readline'

export class Helper {
  readonly child: ChildProcess
  /** Every JSON line the helper printed after the first. */
  readonly messages: Record<string, unknown>[] = []
  stderr = ''
  readonly ready: Promise<Record<string, unknown>>
  readonly exited: Promise<void>

  constructor(script: string, args: string[] = [], options: { env?: Record<string, string>; nodeArgs?: string[] } = {}) {
    this.child = spawn(process.execPath, [...(options.nodeArgs ?? []), script, ...args], { env: { ...process.env, ...options.env }, stdio: ['pipe', 'pipe', 'pipe'] })
    this.child.stderr!.on('data', (data) => (this.stderr += data))
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()))
    const lines = createInterface({ input: this.child.stdout! })
    this.ready = new Promise((resolve, reject) => {
      let first = true
      lines.on('line', (line) => {
        if (!line.startsWith('{')) return // not ours: V8's --trace-gc, for example
        const message = JSON.parse(line) as Record<string, unknown>
        if (first) {
          first = false
          resolve(message)
        } else {
          this.messages.push(message)
          this.waiters.splice(0).forEach((wake) => {
            wake()
          })
        }
      })
      this.child.once('exit', (code, signal) => reject(new Error(`${script} exited (${code ?? signal}) before it was ready\n${this.stderr}`)))
    })
  }

  private waiters: (() => void)[] = []

  get pid(): number {
    return this.child.pid!
  }

  /** Sends one JSON line to the helper's standard input. */
  send(message: Record<string, unknown>): void {
    this.child.stdin!.write(JSON.stringify(message) + '\n')
  }

  /** The next message (after those already taken) that satisfies `predicate`. */
  async next(predicate: (message: Record<string, unknown>) => boolean, timeoutMs = 120_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const index = this.messages.findIndex(predicate)
      if (index >= 0) return this.messages.splice(index, 1)[0]!
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`helper exited\n${this.stderr}`)
      if (Date.now() > deadline) throw new Error(`timed out waiting for a message from the helper\n${this.stderr}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1000)
        this.waiters.push(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    }
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM')
    await this.exited
  }
}

/** Reads one JSON line per message from standard input (the helper's side of `send`). */
// biome-ignore lint/suspicious/noExplicitAny: each bench helper reads the fields of its own commands
export function onCommand(handler: (message: Record<string, any>) => void | Promise<void>): void {
  const lines = createInterface({ input: process.stdin })
  lines.on('line', (line) => void handler(JSON.parse(line)))
}

/** Prints one JSON line on standard output (the helper's side of `ready` and `next`). */
export function announce(message: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(message) + '\n')
}

/** A helper ends when the benchmark that started it goes away (its standard input closes). */
export function exitWithParent(): void {
  process.stdin.on('end', () => process.exit(0))
  process.stdin.resume()
}
