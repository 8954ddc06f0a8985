import { execSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { UsageError } from './errors.ts'
import { caPin, parsePin, pinMatches } from './pin.ts'
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
