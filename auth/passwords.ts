// Users' passwords, kept as scrypt hashes with a random salt per user: a stolen backend
// gives no password without a memory-hard guess per candidate and per user.

import { randomBytes, type ScryptOptions, scrypt, timingSafeEqual } from 'node:crypto'

/**
 * scrypt's cost. N=2^15, r=8, p=1 (32 MiB and some 50-100 ms per hash) is the interactive
 * login setting recommended since scrypt's author's 2009 paper and Go's x/crypto/scrypt
 * documentation (2017); maxmem leaves room above the 32 MiB those take.
 */
export const SCRYPT = {
  N: 2 ** 15,
  r: 8,
  p: 1,
  maxmem: 64 * 1024 * 1024,
  keyLength: 32,
  saltLength: 16,
} as const

export const MIN_PASSWORD_LENGTH = 12
/** Longer gives nothing a password manager needs, and bounds the work one request buys. */
export const MAX_PASSWORD_LENGTH = 1024

export interface PasswordHash {
  /** base64 */
  salt: string
  /** base64 */
  hash: string
  N: number
  r: number
  p: number
}

/** A password that cannot be stored: the reason, never the password. */
export class WeakPassword extends Error {}

export function checkPassword(password: string): void {
  if ([...password].length < MIN_PASSWORD_LENGTH) throw new WeakPassword(`a password needs at least ${MIN_PASSWORD_LENGTH} characters`)
  if (password.length > MAX_PASSWORD_LENGTH) throw new WeakPassword(`a password has at most ${MAX_PASSWORD_LENGTH} characters`)
}

function derive(password: string, salt: Buffer, params: { N: number; r: number; p: number }): Promise<Buffer> {
  const options: ScryptOptions = { N: params.N, r: params.r, p: params.p, maxmem: SCRYPT.maxmem }
  return new Promise((resolve, reject) => scrypt(password.normalize('NFC'), salt, SCRYPT.keyLength, options, (error, key) => (error ? reject(error) : resolve(key))))
}

export async function hashPassword(password: string): Promise<PasswordHash> {
  checkPassword(password)
  const salt = randomBytes(SCRYPT.saltLength)
  const hash = await derive(password, salt, SCRYPT)
  return { salt: salt.toString('base64'), hash: hash.toString('base64'), N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p }
}

/** A hash no password matches: what an unknown user's password is checked against, so that it costs the same scrypt. */
const NOBODY: PasswordHash = {
  salt: randomBytes(SCRYPT.saltLength).toString('base64'),
  hash: randomBytes(SCRYPT.keyLength).toString('base64'),
  N: SCRYPT.N,
  r: SCRYPT.r,
  p: SCRYPT.p,
}

/** Whether `password` matches `stored` (undefined: no user, or none set; scrypt runs all the same). */
export async function verifyPassword(password: string, stored: PasswordHash | undefined): Promise<boolean> {
  const against = stored ?? NOBODY
  const expected = Buffer.from(against.hash, 'base64')
  const given = await derive(password.slice(0, MAX_PASSWORD_LENGTH), Buffer.from(against.salt, 'base64'), against)
  return timingSafeEqual(given, expected) && stored !== undefined
}
