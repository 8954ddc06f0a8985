import { PassThrough } from 'node:stream'
import t from 'tap'
import { createLogger, type LoggerOptions, redact } from './log.ts'

const FIXED = new Date('2026-11-25T02:30:00.123Z')

function capture(options: LoggerOptions = {}) {
  const stream = new PassThrough()
  const chunks: string[] = []
  stream.on('data', (chunk) => chunks.push(String(chunk)))
  const log = createLogger('auth', { level: 'info', stream, now: () => FIXED, ...options })
  return { log, lines: () => chunks.join('').split('\n').filter(Boolean) }
}

t.test('text lines: time, padded level, component, message, fields', async (t) => {
  const { log, lines } = capture()
  log.info('message', { key: 'value', key2: 'quoted value', n: 3, ok: true, empty: '' })
  log.warn('careful')
  t.same(lines(), ['2026-11-25T02:30:00.123Z INFO  [auth] message key=value key2="quoted value" n=3 ok=true empty=""', '2026-11-25T02:30:00.123Z WARN  [auth] careful'])
})

t.test('levels filter and setLevel changes the whole family', async (t) => {
  const { log, lines } = capture({ level: 'warn' })
  const child = log.child('backend')
  log.info('hidden')
  child.debug('hidden too')
  child.error('shown')
  log.setLevel('debug')
  child.debug('now shown')
  t.same(lines(), ['2026-11-25T02:30:00.123Z ERROR [auth:backend] shown', '2026-11-25T02:30:00.123Z DEBUG [auth:backend] now shown'])
  t.equal(child.level, 'debug')
})

t.test('secrets never appear, at any depth, in text or JSON', async (t) => {
  const secret = 'S3CR3T-VALUE'
  const fields = {
    token: secret,
    authToken: secret,
    join_token: secret,
    client_secret: secret,
    password: secret,
    private_key: secret,
    privateKey: secret,
    request: { node: 'pi', token: secret, nested: [{ secret }] },
    host_id: 'h-1',
  }
  for (const format of ['text', 'json'] as const) {
    const { log, lines } = capture({ format })
    log.info('join', fields)
    const [line] = lines()
    t.notMatch(line, secret, `${format}: no secret`)
    t.match(line, 'h-1', `${format}: other fields kept`)
    t.match(line, 'pi', `${format}: nested non-secret kept`)
    t.match(line, '[redacted]')
  }
  const { log, lines } = capture()
  log.info('join', { token: secret, host_id: 'h-1' })
  t.equal(lines()[0], '2026-11-25T02:30:00.123Z INFO  [auth] join token=[redacted] host_id=h-1')
})

t.test('JSON lines carry the fields and cannot be disguised', async (t) => {
  const { log, lines } = capture({ format: 'json' })
  log.error('failed', { level: 'debug', node: 'pi', err: new Error('boom') })
  t.same(JSON.parse(lines()[0]), {
    time: '2026-11-25T02:30:00.123Z',
    level: 'error',
    component: 'auth',
    msg: 'failed',
    node: 'pi',
    err: 'boom',
  })
})

t.test('a message cannot forge a second entry', async (t) => {
  const { log, lines } = capture()
  log.info('from peer: x\n2026-11-25T02:30:00.123Z ERROR [auth] forged', { reason: 'a\nb' })
  t.equal(lines().length, 1)
  t.match(lines()[0], /x\\n2026/)
  t.match(lines()[0], /reason="a\\nb"/)
})

t.test('level from WARREN_LOG_LEVEL when not given', async (t) => {
  const saved = process.env.WARREN_LOG_LEVEL
  t.teardown(() => {
    if (saved === undefined) delete process.env.WARREN_LOG_LEVEL
    else process.env.WARREN_LOG_LEVEL = saved
  })
  process.env.WARREN_LOG_LEVEL = 'debug'
  t.equal(createLogger('x', { stream: new PassThrough() }).level, 'debug')
  process.env.WARREN_LOG_LEVEL = 'nonsense'
  t.equal(createLogger('x', { stream: new PassThrough() }).level, 'info')
  process.env.WARREN_LOG_LEVEL = 'error'
  t.equal(createLogger('x', { stream: new PassThrough(), level: 'warn' }).level, 'warn', 'an explicit level wins')
})

t.test('redact handles shared, circular and binary values', async (t) => {
  const shared = { a: 1 }
  const circular: Record<string, unknown> = { name: 'c' }
  circular.self = circular
  t.same(redact({ x: shared, y: shared }), { x: { a: 1 }, y: { a: 1 } })
  t.same(redact(circular), { name: 'c', self: '[circular]' })
  t.equal(redact(Buffer.from('secret bytes')), '[12 bytes]')
  t.same(redact(new Map([['password', 'p']])), { password: '[redacted]' })
})
