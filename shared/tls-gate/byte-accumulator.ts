// The first bytes of a connection, gathered chunk by chunk until they say what the connection
// is (a PROXY header, a ClientHello). Buffer.concat of all so far at each chunk copies them
// again every time: a client sending its ClientHello a byte per segment would cost the server
// time growing with the square of its length. Here the room doubles when it runs out, so
// every byte is copied a bounded number of times in all.

export class ByteAccumulator {
  #buffer: Buffer
  #length: number

  constructor(initial: Buffer = Buffer.alloc(0)) {
    this.#buffer = initial
    this.#length = initial.length
  }

  /** Appends `chunk`; every byte so far, as a view that the next append may outdate. */
  append(chunk: Buffer): Buffer {
    const length = this.#length + chunk.length
    if (length > this.#buffer.length) {
      const grown = Buffer.allocUnsafe(Math.max(length, 2 * this.#buffer.length, 512))
      this.#buffer.copy(grown, 0, 0, this.#length)
      this.#buffer = grown
    }
    chunk.copy(this.#buffer, this.#length)
    this.#length = length
    return this.#buffer.subarray(0, length)
  }
}
