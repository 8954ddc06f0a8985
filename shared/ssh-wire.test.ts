// The SSH wire encoding: what is written reads back, and short or malformed input is refused
// with the name of what was being read, never read past its end.

import t from 'tap'
import { SshReader, sshString, uint32, uint64 } from './ssh-wire.ts'

t.test('strings, uint32 and uint64 read back as written', async (t) => {
  const data = Buffer.concat([sshString('ssh-ed25519'), uint32(0xfffffffe), uint64(0xffff_ffff_ffff_fffen), sshString(Buffer.of(0, 1, 2)), sshString('')])
  t.equal(data.subarray(0, 4).toString('hex'), '0000000b', 'a string starts with its length, big-endian')
  const reader = new SshReader(data, 'test blob')
  t.equal(reader.readText(), 'ssh-ed25519')
  t.equal(reader.readUint32(), 0xfffffffe)
  t.equal(reader.readUint64(), 0xffff_ffff_ffff_fffen)
  t.same([...reader.readString()], [0, 1, 2])
  t.equal(reader.readText(), '')
  t.ok(reader.atEnd())
  t.doesNotThrow(() => reader.expectEnd())
})

t.test('a length beyond the data is refused before anything is read', async (t) => {
  const claimsMore = Buffer.concat([uint32(1000), Buffer.from('short')])
  const reader = new SshReader(claimsMore, 'test blob')
  t.throws(() => reader.readString(), { message: 'test blob is truncated' })
  t.equal(reader.offset, 4, 'only the length was read')
  t.throws(() => new SshReader(Buffer.of(0, 0, 0), 'test blob').readUint32(), { message: 'test blob is truncated' })
  t.throws(() => new SshReader(uint32(1), 'test blob').readUint64(), { message: 'test blob is truncated' })
})

t.test('text must be UTF-8, and data left over is an error when the end is expected', async (t) => {
  t.throws(() => new SshReader(sshString(Buffer.of(0xff, 0xfe)), 'test blob').readText(), { message: 'test blob contains a string that is not UTF-8' })
  const reader = new SshReader(Buffer.concat([sshString('a'), Buffer.of(0)]), 'test blob')
  reader.readText()
  t.notOk(reader.atEnd())
  t.throws(() => reader.expectEnd(), { message: 'test blob has trailing data' })
})
