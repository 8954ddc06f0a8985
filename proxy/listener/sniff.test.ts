import t from 'tap'
import { SNIFF_LENGTH, sniffProtocol } from './sniff.ts'

t.test('each protocol from its first bytes', async (t) => {
  const cases: Array<[string | Buffer, string | undefined]> = [
    [Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]), 'tls'],
    [Buffer.from([0x16, 0x03]), 'tls'],
    [Buffer.from([0x16]), undefined],
    [Buffer.from([0x16, 0x02]), 'unknown'],
    [Buffer.from([0x17, 0x03, 0x03]), 'unknown'],
    ['SSH-2.0-OpenSSH_9.6\r\n', 'ssh'],
    ['WARREN-SSH-STREAM/2\n', 'ssh-stream'],
    ['SSH', undefined],
    ['SSH_', 'unknown'],
    ['GET / HTTP/1.1\r\n', 'http'],
    ['POST /v1/join HTTP/1.1\r\n', 'http'],
    ['HEAD / HTTP/1.1\r\n', 'http'],
    ['PUT / HTTP/1.1\r\n', 'http'],
    ['DELETE / HTTP/1.1\r\n', 'http'],
    ['OPTIONS * HTTP/1.1\r\n', 'http'],
    ['PATCH / HTTP/1.1\r\n', 'http'],
    ['CONNECT host:22 HTTP/1.1\r\n', 'http'],
    ['GET', undefined],
    ['P', undefined],
    ['PU', undefined],
    ['PUTS', 'unknown'],
    ['GETX', 'unknown'],
    ['get / HTTP/1.1', 'unknown'],
    ['PRI * HTTP/2.0', 'unknown'],
    ['\x00\x00\x00\x00', 'unknown'],
    ['', undefined],
  ]
  for (const [input, expected] of cases) {
    const head = typeof input === 'string' ? Buffer.from(input, 'latin1') : input
    t.equal(sniffProtocol(head), expected, JSON.stringify(head.toString('latin1')))
  }
  t.equal(SNIFF_LENGTH, 4)
})
