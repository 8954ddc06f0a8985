import { execFileSync } from 'node:child_process'
import t from 'tap'
import { base32Decode, base32Encode, generateTotpSecret, hotp, otpauthUri, TOTP, totpCode, totpStep, verifyTotp } from './totp.ts'

t.test('RFC 6238 appendix B test vectors (SHA-1, 8 digits)', async (t) => {
  const secret = Buffer.from('12345678901234567890', 'ascii')
  const vectors: [number, string][] = [
    [59, '94287082'],
    [1111111109, '07081804'],
    [1111111111, '14050471'],
    [1234567890, '89005924'],
    [2000000000, '69279037'],
    [20000000000, '65353130'],
  ]
  for (const [seconds, code] of vectors) t.equal(hotp(secret, totpStep(seconds * 1000), 8), code, `T=${seconds}`)
})

t.test('base32 round trip, RFC 4648 vectors', async (t) => {
  t.equal(base32Encode(Buffer.from('foobar')), 'MZXW6YTBOI')
  t.equal(base32Decode('MZXW6YTBOI').toString(), 'foobar')
  t.equal(base32Decode('mzxw 6ytb oi======').toString(), 'foobar', 'lower case, spaces and padding are read')
  t.throws(() => base32Decode('MZ1'), /"1" is not a base32 character/)
  const secret = generateTotpSecret()
  t.equal(base32Decode(secret).length, TOTP.secretBytes)
})

t.test('codes agree with oathtool, an independent implementation', async (t) => {
  const secret = generateTotpSecret()
  for (const seconds of [0, 59, 1_700_000_000, 1_765_000_015]) {
    const theirs = execFileSync('oathtool', ['--totp', '-b', secret, `--now=@${seconds}`], { encoding: 'utf8' }).trim()
    t.equal(totpCode(secret, seconds * 1000), theirs, `T=${seconds}`)
  }
})

t.test('verification: a step either side, never twice, nothing else', async (t) => {
  const secret = generateTotpSecret()
  const now = 1_765_000_000_000
  const step = totpStep(now)
  t.equal(verifyTotp(secret, totpCode(secret, now), now), step)
  t.equal(verifyTotp(secret, totpCode(secret, now - TOTP.stepMs), now), step - 1, 'the previous step')
  t.equal(verifyTotp(secret, totpCode(secret, now + TOTP.stepMs), now), step + 1, 'the next step')
  t.equal(verifyTotp(secret, totpCode(secret, now - 2 * TOTP.stepMs), now), undefined, 'two steps back is too old')
  t.equal(verifyTotp(secret, totpCode(secret, now), now, step), undefined, 'a code already used is refused within its window')
  t.equal(verifyTotp(secret, totpCode(secret, now - TOTP.stepMs), now, step), undefined, 'and so is an older one')
  t.equal(verifyTotp(secret, '12345', now), undefined)
  t.equal(verifyTotp(secret, '', now), undefined)
  t.equal(verifyTotp(secret, 'x'.repeat(100), now), undefined)
})

t.test('otpauth URI', async (t) => {
  t.equal(
    otpauthUri({ issuer: 'my cluster', account: 'alice', secret: 'JBSWY3DPEHPK3PXP' }),
    'otpauth://totp/my%20cluster:alice?secret=JBSWY3DPEHPK3PXP&issuer=my+cluster&algorithm=SHA1&digits=6&period=30',
  )
})
