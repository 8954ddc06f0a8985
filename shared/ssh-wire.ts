// The SSH wire encoding (RFC 4251 section 5) that OpenSSH certificates, key files and
// signatures are made of: uint32, uint64, and string (a uint32 length, then the bytes).
// Reading treats every input as hostile: each length is checked against what remains
// before anything is read.

/** Reads `buffer` front to back; every read throws an Error naming `what` when the data is short or malformed. */
export class SshReader {
  readonly buffer: Buffer
  readonly what: string
  offset = 0

  constructor(buffer: Buffer, what: string) {
    this.buffer = buffer
    this.what = what
  }

  atEnd(): boolean {
    return this.offset === this.buffer.length
  }

  expectEnd(): void {
    if (!this.atEnd()) throw new Error(`${this.what} has trailing data`)
  }

  readUint32(): number {
    this.need(4)
    const value = this.buffer.readUInt32BE(this.offset)
    this.offset += 4
    return value
  }

  readUint64(): bigint {
    this.need(8)
    const value = this.buffer.readBigUInt64BE(this.offset)
    this.offset += 8
    return value
  }

  readString(): Buffer {
    const length = this.readUint32()
    this.need(length)
    const value = this.buffer.subarray(this.offset, this.offset + length)
    this.offset += length
    return value
  }

  /** A string that must be UTF-8. */
  readText(): string {
    const bytes = this.readString()
    const text = bytes.toString('utf8')
    if (!Buffer.from(text, 'utf8').equals(bytes)) throw new Error(`${this.what} contains a string that is not UTF-8`)
    return text
  }

  private need(count: number): void {
    if (count > this.buffer.length - this.offset) throw new Error(`${this.what} is truncated`)
  }
}

/** A string: its length as a uint32, then its bytes (text as UTF-8). */
export function sshString(value: Buffer | string): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value
  return Buffer.concat([uint32(bytes.length), bytes])
}

export function uint32(value: number): Buffer {
  const out = Buffer.alloc(4)
  out.writeUInt32BE(value)
  return out
}

export function uint64(value: bigint): Buffer {
  const out = Buffer.alloc(8)
  out.writeBigUInt64BE(value)
  return out
}
