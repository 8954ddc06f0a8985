// Looks inside a running Warren process through the V8 inspector (the process runs with
// NODE_OPTIONS=--inspect=127.0.0.1:0 and prints its WebSocket address on standard error):
// its heap and native memory as Node counts them, and a CPU profile of a chosen window.

import { writeFileSync } from 'node:fs'

export class InspectorClient {
  private readonly socket: WebSocket
  private nextId = 1
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>()

  private constructor(socket: WebSocket) {
    this.socket = socket
    socket.addEventListener('message', (event) => {
      const message = JSON.parse(String(event.data))
      const waiter = message.id === undefined ? undefined : this.pending.get(message.id)
      if (!waiter) return
      this.pending.delete(message.id)
      if (message.error) waiter.reject(new Error(message.error.message))
      else waiter.resolve(message.result)
    })
  }

  /** Connects to the address in a process's "Debugger listening on ws://..." line. */
  static async fromLog(stderr: string): Promise<InspectorClient> {
    const url = /Debugger listening on (ws:\/\/\S+)/.exec(stderr)?.[1]
    if (!url) throw new Error('the process did not print an inspector address')
    const socket = new WebSocket(url)
    await new Promise((resolve, reject) => {
      socket.addEventListener('open', resolve, { once: true })
      socket.addEventListener('error', () => reject(new Error(`cannot reach the inspector at ${url}`)), { once: true })
    })
    return new InspectorClient(socket)
  }

  /** The method's result, of the type the inspector protocol documents for it. */
  call<T>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = this.nextId++
    this.socket.send(JSON.stringify({ id, method, params }))
    return new Promise((resolve, reject) => this.pending.set(id, { resolve: (value) => resolve(value as T), reject }))
  }

  /** `expression` evaluated in the process; its value must be JSON. */
  async evaluate<T>(expression: string): Promise<T> {
    const result = await this.call<{ result: { value: string }; exceptionDetails?: { text: string } }>('Runtime.evaluate', {
      expression: `JSON.stringify(${expression})`,
      returnByValue: true,
    })
    if (result.exceptionDetails) throw new Error(`evaluation failed: ${result.exceptionDetails.text}`)
    return JSON.parse(result.result.value) as T
  }

  /** process.memoryUsage() after a full garbage collection (so the heap holds only live objects). */
  async memoryAfterGc(): Promise<NodeJS.MemoryUsage> {
    await this.call('HeapProfiler.collectGarbage')
    return this.evaluate<NodeJS.MemoryUsage>('process.memoryUsage()')
  }

  /** CPU profile of the next `seconds`, written to `file` (a .cpuprofile). */
  async profile(seconds: number, file: string): Promise<void> {
    await this.call('Profiler.enable')
    await this.call('Profiler.setSamplingInterval', { interval: 1000 })
    await this.call('Profiler.start')
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000))
    const { profile } = await this.call<{ profile: unknown }>('Profiler.stop')
    writeFileSync(file, JSON.stringify(profile))
  }

  close(): void {
    this.socket.close()
  }
}
