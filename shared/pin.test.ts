import { execSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { UsageError, WarrenError } from './errors.ts'
import { caPin, parsePin, pinMatches, singleCertificate } from './pin.ts'
import { createCA } from './x509.ts'

function usageErrorOf(fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return err instanceof UsageError ? err : `not a UsageError: ${err}`
  }
  return 'did not throw'
}

t.test('the pin is the SHA-256 of the public key openssl extracts', async (t) => {
  const dir = t.testdir()
  const { certPem } = createCA('Warren Host CA', 'cluster')
  const file = join(dir, 'ca.pem')
  writeFileSync(file, certPem)
  const digest = execSync(`openssl x509 -in '${file}' -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum`, { encoding: 'utf8' })
  const expected = `sha256:${digest.split(' ')[0]}`
  t.match(expected, /^sha256:[0-9a-f]{64}$/)
  t.equal(caPin(certPem), expected)
})

t.test('pins match only the certificate they were taken from', async (t) => {
  const first = createCA('Warren Host CA', 'cluster').certPem
  const second = createCA('Warren Host CA', 'cluster').certPem
  const pin = caPin(first)
  t.not(pin, caPin(second))
  t.equal(pinMatches([first], pin), true)
  t.equal(pinMatches([second], pin), false)
  t.equal(pinMatches([second, first], pin), true, 'any certificate in the set may match')
  t.equal(pinMatches([], pin), false)
  t.equal(pinMatches([first], pin.toUpperCase().replace('SHA256', 'sha256')), true, 'hex case does not matter')
  t.type(
    usageErrorOf(() => pinMatches([first], 'sha256:abc')),
    UsageError,
  )
})

t.test('parsePin accepts the documented form only', async (t) => {
  const hex = 'AbCdEf0123456789'.repeat(4)
  t.equal(parsePin(`sha256:${hex}`), `sha256:${hex.toLowerCase()}`)
  t.equal(parsePin(` sha256:${hex}\n`), `sha256:${hex.toLowerCase()}`, 'surrounding whitespace from a file is ignored')
  const bad = ['', hex, `sha1:${hex}`, `SHA256:${hex}`, `sha256:${hex.slice(1)}`, `sha256:${hex}0`, `sha256:${hex.slice(1)}g`, `sha256: ${hex}`, `sha256:${hex}:extra`]
  for (const text of bad) {
    t.type(
      usageErrorOf(() => parsePin(text)),
      UsageError,
      JSON.stringify(text),
    )
  }
  t.throws(() => parsePin('sha256:xyz'), /invalid CA pin "sha256:xyz": expected sha256: followed by 64 hex digits/)
  t.equal((usageErrorOf(() => parsePin('nope')) as UsageError).exitCode, 2, 'bad usage exit code')
})

t.test('a text of two certificates is refused: its pin would name the first while TLS trusts both', async (t) => {
  const real = createCA('Warren Host CA', 'cluster').certPem
  const evil = createCA('Warren Host CA', 'cluster').certPem
  const pin = caPin(real)
  const refusal = /holds 2 certificates, where it must hold exactly one certificate/
  t.throws(() => caPin(real + evil), refusal)
  t.throws(() => pinMatches([real + evil], pin), refusal)
  t.throws(() => pinMatches([evil, real + evil], pin), refusal, 'whichever entry holds them')
  t.throws(() => singleCertificate(real + evil, 'CA entry 1 from 127.0.0.1:3080'), /^CA entry 1 from 127\.0\.0\.1:3080 holds 2 certificates/)
  t.type(
    (() => {
      try {
        singleCertificate(real + evil)
      } catch (err) {
        return err
      }
    })(),
    WarrenError,
  )
})

t.test('singleCertificate takes one certificate and gives it back alone', async (t) => {
  const { certPem, key } = createCA('Warren Host CA', 'cluster')
  const keyPem = key.export({ type: 'pkcs8', format: 'pem' }) as string
  t.equal(singleCertificate(certPem), certPem.trimEnd() + '\n')
  t.equal(singleCertificate(`comment before\n${certPem}\ncomment after\n`), certPem.trimEnd() + '\n', 'the text around the block is left out')
  t.throws(() => singleCertificate(''), /holds 0 certificates/)
  t.throws(() => singleCertificate('not PEM at all'), /holds 0 certificates/)
  t.throws(() => singleCertificate(certPem + keyPem), /holds 1 certificate and 1 other PEM block/, 'any other block is refused too')
  t.throws(() => singleCertificate(certPem.replaceAll('CERTIFICATE', 'TRUSTED CERTIFICATE')), /holds 0 certificates and 1 other PEM block/)
  t.throws(() => singleCertificate(42 as unknown as string), /holds 0 certificates/, 'a value from JSON that is no text')
})
