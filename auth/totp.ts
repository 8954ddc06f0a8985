// Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP): the second factor a user
// enrols when accepting an invitation and gives at every login. The parameters are the ones
// every authenticator app assumes when an otpauth:// URI names none other.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

/** RFC 6238's defaults, which authenticator apps assume: HMAC-SHA-1, 6 digits, 30 s steps. */
export const TOTP = {
  digits: 6,
  stepMs: 30_000,
  /** Steps either side of now still accepted: a phone's clock a little off, a code typed as it turned. */
  window: 1,
  /** 160 bits: the HMAC-SHA-1 key length RFC 4226 recommends. */
  secretBytes: 20,
} as const

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'

/** RFC 4648 base32 without padding, the form otpauth:// URIs and oathtool take. */
export function base32Encode(bytes: Buffer): string {
  let bits = 0
  let value = 0
  let out = ''
  for (const byte of bytes) {
    value = (value << 8) | byte
    bits += 8
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31]
  return out
}

export function base32Decode(text: string): Buffer {
  const clean = text.toUpperCase().replace(/[\s=]/g, '')
  const bytes: number[] = []
  let bits = 0
  let value = 0
  for (const char of clean) {
    const index = BASE32.indexOf(char)
    if (index < 0) throw new Error(`"${char}" is not a base32 character`)
    value = ((value << 5) | index) & 0xffff
    bits += 5
    if (bits >= 8) {
      bytes.push((value >>> (bits - 8)) & 0xff)
      bits -= 8
    }
  }
  return Buffer.from(bytes)
}

/** A fresh secret, base32. */
export function generateTotpSecret(): string {
  return base32Encode(randomBytes(TOTP.secretBytes))
}

/** The HOTP value of `counter` (RFC 4226, section 5.3), as `digits` decimal digits. */
export function hotp(secret: Buffer, counter: number, digits: number = TOTP.digits, algorithm = 'sha1'): string {
  const message = Buffer.alloc(8)
  message.writeBigUInt64BE(BigInt(counter))
  const mac = createHmac(algorithm, secret).update(message).digest()
  const offset = mac[mac.length - 1] & 0x0f
  const binary = mac.readUInt32BE(offset) & 0x7fffffff
  return String(binary % 10 ** digits).padStart(digits, '0')
}

/** The time step `atMs` falls in. */
export function totpStep(atMs: number): number {
  return Math.floor(atMs / TOTP.stepMs)
}

export function totpCode(secretBase32: string, atMs: number): string {
  return hotp(base32Decode(secretBase32), totpStep(atMs))
}

/**
 * The step whose code `code` is, within the window around `nowMs` and after `lastUsedStep`
 * (a code once accepted is never accepted again, even within its window), or undefined.
 * Every step of the window is compared, in constant time, whatever matched.
 */
export function verifyTotp(secretBase32: string, code: string, nowMs: number, lastUsedStep = -1): number | undefined {
  const secret = base32Decode(secretBase32)
  const given = Buffer.from(code.padEnd(TOTP.digits, ' ').slice(0, 16))
  const now = totpStep(nowMs)
  let found: number | undefined
  for (let step = now - TOTP.window; step <= now + TOTP.window; step++) {
    const expected = Buffer.from(hotp(secret, step).padEnd(given.length, ' '))
    const equal = expected.length === given.length && timingSafeEqual(expected, given)
    if (equal && step > lastUsedStep && found === undefined) found = step
  }
  return found
}

/** The URI an authenticator app reads (from its QR code): Key Uri Format, issuer and account in the label. */
export function otpauthUri(options: { issuer: string; account: string; secret: string }): string {
  const label = `${encodeURIComponent(options.issuer)}:${encodeURIComponent(options.account)}`
  const query = new URLSearchParams({ secret: options.secret, issuer: options.issuer, algorithm: 'SHA1', digits: String(TOTP.digits), period: String(TOTP.stepMs / 1000) })
  return `otpauth://totp/${label}?${query.toString()}`
}
