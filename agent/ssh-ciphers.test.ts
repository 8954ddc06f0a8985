import t from 'tap'
import { hasAesInstructions, serverCiphers } from './ssh-ciphers.ts'

const X64_AES = 'processor\t: 0\nflags\t\t: fpu vme sse2 ssse3 aes avx2\n'
const X64_NO_AES = 'processor\t: 0\nflags\t\t: fpu vme sse2 ssse3 avx2\n'
const ARM64_AES = 'processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n'
const ARM64_NO_AES = 'processor\t: 0\nFeatures\t: fp asimd evtstrm crc32\nmodel name\t: aes-like board\n'

t.test('AES instructions are read from the flags of x86 and the Features of arm64', async (t) => {
  t.ok(hasAesInstructions(X64_AES))
  t.notOk(hasAesInstructions(X64_NO_AES))
  t.ok(hasAesInstructions(ARM64_AES))
  t.notOk(hasAesInstructions(ARM64_NO_AES), 'only the flags line counts, not a model name')
})

t.test('with AES instructions only AES-GCM is offered, so clients can pick neither ChaCha20 nor AES-CTR', async (t) => {
  t.same(serverCiphers(X64_AES), ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com'])
  t.same(serverCiphers(ARM64_AES), ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com'])
})

t.test('without them ChaCha20 comes first; an unknown CPU keeps the library default', async (t) => {
  t.equal(serverCiphers(ARM64_NO_AES)![0], 'chacha20-poly1305@openssh.com')
  t.equal(serverCiphers(null), undefined)
})
