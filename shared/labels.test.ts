import t from 'tap'
import { UsageError } from './errors.ts'
import { checkLabels, parseLabels, validLabels } from './labels.ts'
import { isPrintable, printable } from './printable.ts'

t.test('valid labels pass as they are', async (t) => {
  const labels = { env: 'prod', 'topology.kubernetes.io/zone': 'eu-west-1a', 'a:b*c_d-e': '', site: 'Zürich 🏔', note: 'tab-free, "quoted" = fine' }
  t.same(checkLabels(labels), labels)
  t.same(validLabels(labels), labels)
})

t.test("keys follow Teleport's alphabet and are bounded", async (t) => {
  for (const key of ['', 'bad key', 'ünïcode', 'semi;colon', 'esc\x1b', 'line\nbreak', 'k'.repeat(129)]) {
    t.throws(() => checkLabels({ [key]: 'v' }), /is not a valid label name|is longer than 128 characters/, printable(key))
  }
  t.same(checkLabels({ ['k'.repeat(128)]: 'v' }), { ['k'.repeat(128)]: 'v' }, '128 characters are allowed')
  const error = (() => {
    try {
      checkLabels({ 'x\x1b[2J': 'v' })
    } catch (e) {
      return (e as Error).message
    }
  })()
  t.equal(error, 'label "x\\x1b[2J" is not a valid label name (letters, digits and / . _ : * -)', 'the bad key is quoted with escapes')
})

t.test('values are printable text and bounded', async (t) => {
  for (const value of ['\x1b[2J', 'x\r\nforged-row', 'nul\x00', 'del\x7f', 'csi\x9b2J', 'bidi\u202egnp.exe', 'sep\u2028', 'lone\ud800', 'v'.repeat(257)]) {
    t.throws(() => checkLabels({ k: value }), /^label "k" (holds a control character|is longer than 256 characters)/, printable(value))
    t.equal(validLabels({ k: value }), undefined)
  }
  t.throws(() => checkLabels({ k: 1 }), /label "k" must have a string value/)
  t.same(checkLabels({ k: 'v'.repeat(256) }), { k: 'v'.repeat(256) })
})

t.test('at most 64 labels, and only an object of them', async (t) => {
  const many = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 'v']))
  t.same(Object.keys(checkLabels(many(64))).length, 64)
  t.throws(() => checkLabels(many(65)), /at most 64 labels are allowed, not 65/)
  for (const value of [null, 'env=prod', ['env'], 3]) t.throws(() => checkLabels(value), /labels must be an object of strings/)
})

t.test('--labels: the same rules, as bad usage', async (t) => {
  t.same(parseLabels('distro=ubuntu, env=prod'), { distro: 'ubuntu', env: 'prod' })
  t.same(
    Object.entries(parseLabels('__proto__=x,constructor=y')),
    [
      ['__proto__', 'x'],
      ['constructor', 'y'],
    ],
    'a key named like a property of every object is a label like any other',
  )
  t.ok(
    (() => {
      try {
        parseLabels('motd=\x1b[2J')
      } catch (e) {
        return e instanceof UsageError
      }
    })(),
    'a UsageError (exit status 2)',
  )
  t.throws(() => parseLabels('motd=\x1b[2J'), /^--labels: label "motd" holds a control character/)
  t.throws(() => parseLabels('bad key=x'), /invalid label "bad key=x"/)
  t.throws(() => parseLabels('env=a, env=b'), /^label "env" is given more than once in --labels: give each key once$/, 'one value per key')
})

t.test('printable escapes what a terminal acts on and keeps the rest', async (t) => {
  t.equal(printable('\x1b[2J\r\n\t\x00\x7f\x9b'), '\\x1b[2J\\x0d\\x0a\\x09\\x00\\x7f\\x9b')
  t.equal(printable('\u202eabc\u2029\u{e0001}'), '\\u202eabc\\u2029\\u{e0001}')
  t.equal(printable('Zürich 🏔 ⟵ Tunnel "x" \\ y'), 'Zürich 🏔 ⟵ Tunnel "x" \\ y')
  t.ok(isPrintable('Zürich 🏔'))
  t.notOk(isPrintable('a\nb'))
})
