import { execFileSync, spawnSync } from 'node:child_process'
import { createHash, generateKeyPairSync, type KeyObject, randomBytes, randomInt } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import {
  createSshCertificate,
  parseSshCertificate,
  parseSshPublicKey,
  SSH_CERT_FOREVER,
  type SshCertificateRequest,
  sshPublicKeyLine,
  verifySshCertificate,
  verifySshCertificateSignature,
} from './ssh-cert.ts'

const HOUR = 3_600_000
const NOW = new Date('2030-05-06T07:08:09Z')

function ed25519() {
  return generateKeyPairSync('ed25519')
}

function userRequest(caKey: KeyObject, overrides: Partial<SshCertificateRequest> = {}): SshCertificateRequest {
  return {
    publicKey: ed25519().publicKey,
    caKey,
    type: 'user',
    keyId: 'alice@cluster',
    principals: ['alice', 'root'],
    validAfter: new Date(NOW.getTime() - HOUR),
    validBefore: new Date(NOW.getTime() + HOUR),
    serial: 42n,
    ...overrides,
  }
}

/** `ssh-keygen -L` output as a map of field to value, with list fields as arrays. */
function sshKeygenList(file: string) {
  const result = spawnSync('ssh-keygen', ['-L', '-f', file], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } })
  if (result.status !== 0) throw new Error(`ssh-keygen -L failed: ${result.stderr}`)
  const fields: Record<string, string | string[]> = {}
  let list: string[] | undefined
  for (const line of result.stdout.split('\n').slice(1)) {
    const field = /^ {8}([^:]+): ?(.*)$/.exec(line)
    if (field) {
      const value = field[2].trim()
      list = value === '' ? [] : undefined
      fields[field[1]] = list ?? (value === '(none)' ? [] : value)
    } else if (list && line.trim()) {
      list.push(line.trim())
    }
  }
  return fields
}

function fingerprint(blobOrLine: Buffer | string): string {
  const blob = typeof blobOrLine === 'string' ? Buffer.from(blobOrLine.split(' ')[1], 'base64') : blobOrLine
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')
}

function keyBlob(key: KeyObject): Buffer {
  return Buffer.from(sshPublicKeyLine(key).split(' ')[1], 'base64')
}

t.test('a user certificate reads back through ssh-keygen', async (t) => {
  const dir = t.testdir()
  const ca = ed25519()
  const req = userRequest(ca.privateKey, { criticalOptions: { 'source-address': '10.0.0.0/8', 'force-command': '/bin/true' } })
  const line = createSshCertificate(req)
  t.match(line, /^ssh-ed25519-cert-v01@openssh\.com AAAA[A-Za-z0-9+/]+=*$/)
  const file = join(dir, 'alice-cert.pub')
  writeFileSync(file, line + '\n')
  const listed = sshKeygenList(file)
  t.same(listed, {
    Type: 'ssh-ed25519-cert-v01@openssh.com user certificate',
    'Public key': `ED25519-CERT ${fingerprint(keyBlob(req.publicKey))}`,
    'Signing CA': `ED25519 ${fingerprint(keyBlob(ca.publicKey))} (using ssh-ed25519)`,
    'Key ID': '"alice@cluster"',
    Serial: '42',
    Valid: 'from 2030-05-06T06:08:09 to 2030-05-06T08:08:09',
    Principals: ['alice', 'root'],
    'Critical Options': ['force-command /bin/true', 'source-address 10.0.0.0/8'],
    Extensions: ['permit-X11-forwarding', 'permit-agent-forwarding', 'permit-port-forwarding', 'permit-pty', 'permit-user-rc'],
  })

  // ssh-keygen checks the CA signature while reading, so a tampered certificate must fail.
  const blob = Buffer.from(line.split(' ')[1], 'base64')
  blob[110] ^= 1
  writeFileSync(file, `ssh-ed25519-cert-v01@openssh.com ${blob.toString('base64')}\n`)
  t.throws(() => sshKeygenList(file), /ssh-keygen -L failed/)
})

t.test('a host certificate reads back through ssh-keygen', async (t) => {
  const dir = t.testdir()
  const ca = ed25519()
  const line = createSshCertificate({
    publicKey: ed25519().privateKey, // the public half is taken from a private key too
    caKey: ca.privateKey,
    type: 'host',
    keyId: 'node-1',
    principals: ['node-1', 'node-1.cluster'],
    validAfter: new Date(0),
    validBefore: SSH_CERT_FOREVER,
    serial: 0xffff_ffff_ffff_fffen,
  })
  const file = join(dir, 'host-cert.pub')
  writeFileSync(file, line)
  const listed = sshKeygenList(file)
  t.equal(listed.Type, 'ssh-ed25519-cert-v01@openssh.com host certificate')
  t.equal(listed.Serial, '18446744073709551614')
  t.equal(listed.Valid, 'forever')
  t.same(listed.Principals, ['node-1', 'node-1.cluster'])
  t.same(listed['Critical Options'], [])
  t.same(listed.Extensions, [], 'host certificates carry no extensions by default')
  const parsed = parseSshCertificate(line)
  t.equal(parsed.validBefore.getTime(), SSH_CERT_FOREVER.getTime())
  t.equal(parsed.validAfter.getTime(), 0)
  t.equal(parsed.serial, 0xffff_ffff_ffff_fffen)
})

t.test('round trip through the parser', async (t) => {
  const ca = ed25519()
  const req = userRequest(ca.privateKey, {
    extensions: { 'permit-pty': '', 'warren-roles': 'admin,dev', 'permit-X11-forwarding': '' },
    criticalOptions: { 'force-command': 'uptime' },
  })
  const line = createSshCertificate(req)
  const blob = Buffer.from(line.split(' ')[1], 'base64')
  for (const input of [line, `${line} a comment`, blob]) {
    const cert = parseSshCertificate(input)
    t.equal(cert.keyType, 'ssh-ed25519-cert-v01@openssh.com')
    t.equal(cert.nonce.length, 32)
    t.ok(keyBlob(cert.publicKey).equals(keyBlob(req.publicKey)), 'subject key')
    t.ok(keyBlob(cert.signatureKey).equals(keyBlob(ca.publicKey)), 'CA key')
    t.equal(cert.serial, 42n)
    t.equal(cert.type, 'user')
    t.equal(cert.keyId, 'alice@cluster')
    t.same(cert.principals, ['alice', 'root'])
    t.equal(cert.validAfter.toISOString(), '2030-05-06T06:08:09.000Z')
    t.equal(cert.validBefore.toISOString(), '2030-05-06T08:08:09.000Z')
    t.same({ ...cert.criticalOptions }, { 'force-command': 'uptime' })
    t.same({ ...cert.extensions }, { 'permit-X11-forwarding': '', 'permit-pty': '', 'warren-roles': 'admin,dev' })
    t.same(Object.keys(cert.extensions), ['permit-X11-forwarding', 'permit-pty', 'warren-roles'], 'sorted by name')
    t.equal(cert.signature.length, 64)
    t.ok(blob.subarray(0, cert.signedData.length).equals(cert.signedData))
  }
  const first = parseSshCertificate(line)
  const second = parseSshCertificate(createSshCertificate(req))
  t.notOk(first.nonce.equals(second.nonce), 'every certificate has a fresh nonce')
})

t.test('public key lines', async (t) => {
  const dir = t.testdir()
  const key = ed25519()
  const line = sshPublicKeyLine(key.publicKey, 'alice@laptop')
  t.match(line, /^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]+ alice@laptop$/)
  t.equal(sshPublicKeyLine(key.privateKey), line.replace(' alice@laptop', ''))
  t.ok(keyBlob(parseSshPublicKey(line)).equals(keyBlob(key.publicKey)))

  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'made-by-openssh', '-f', join(dir, 'id')])
  const openssh = readFileSync(join(dir, 'id.pub'), 'utf8').trim()
  t.equal(sshPublicKeyLine(parseSshPublicKey(openssh), 'made-by-openssh'), openssh)
  writeFileSync(join(dir, 'ours.pub'), line + '\n')
  t.match(execFileSync('ssh-keygen', ['-l', '-f', join(dir, 'ours.pub')], { encoding: 'utf8' }), fingerprint(line))

  t.throws(() => parseSshPublicKey('ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ== x'), /only ssh-ed25519/)
  t.throws(() => parseSshPublicKey('ssh-ed25519 not*base64'), /not valid base64/)
  t.throws(() => parseSshPublicKey(`ssh-ed25519 ${Buffer.from('garbage').toString('base64')}`), /truncated/)
  const longer = Buffer.concat([keyBlob(key.publicKey), Buffer.of(0)])
  t.throws(() => parseSshPublicKey(`ssh-ed25519 ${longer.toString('base64')}`), /trailing data/)
  t.throws(() => sshPublicKeyLine(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey), /only Ed25519/)
})

t.test('verification accepts the good and names what is wrong with the rest', async (t) => {
  const ca = ed25519()
  const otherCa = ed25519()
  const cert = parseSshCertificate(createSshCertificate(userRequest(ca.privateKey)))
  const trusted = { trustedCaKeys: [otherCa.publicKey, ca.publicKey], type: 'user' as const, now: NOW }

  t.doesNotThrow(() => verifySshCertificate(cert, trusted))
  t.doesNotThrow(() => verifySshCertificate(cert, { ...trusted, principal: 'root' }))
  t.doesNotThrow(() => verifySshCertificate(cert, { ...trusted, trustedCaKeys: [ca.privateKey] }), 'a private CA key is trusted by its public half')
  t.doesNotThrow(() => verifySshCertificate(cert, { ...trusted, now: new Date(cert.validAfter) }), 'valid from validAfter exactly')

  t.throws(() => verifySshCertificate(cert, { ...trusted, trustedCaKeys: [otherCa.publicKey] }), /untrusted CA/)
  t.throws(() => verifySshCertificate(cert, { ...trusted, trustedCaKeys: [] }), /untrusted CA/)

  const blob = Buffer.from(createSshCertificate(userRequest(ca.privateKey)).split(' ')[1], 'base64')
  blob[110] ^= 1 // inside the serial: still well-formed, no longer what the CA signed
  t.throws(() => verifySshCertificate(parseSshCertificate(blob), trusted), /bad signature/)

  // A certificate claiming the trusted CA but signed by another key.
  const forged = parseSshCertificate(createSshCertificate(userRequest(otherCa.privateKey)))
  t.throws(() => verifySshCertificate({ ...forged, signatureKey: ca.publicKey }, trusted), /bad signature/)

  t.throws(() => verifySshCertificate(cert, { ...trusted, now: new Date(cert.validBefore) }), /expired/)
  t.throws(() => verifySshCertificate(cert, { ...trusted, now: new Date(NOW.getTime() + 2 * HOUR) }), /expired/)
  t.throws(() => verifySshCertificate(cert, { ...trusted, now: new Date(NOW.getTime() - 2 * HOUR) }), /not yet valid/)
  t.throws(() => verifySshCertificate(cert, { ...trusted, principal: 'bob' }), /does not list principal "bob"/)
  t.throws(() => verifySshCertificate(cert, { ...trusted, type: 'host' }), /wrong type/)

  const host = parseSshCertificate(createSshCertificate(userRequest(ca.privateKey, { type: 'host', principals: ['node-1'] })))
  t.doesNotThrow(() => verifySshCertificate(host, { ...trusted, type: 'host', principal: 'node-1' }))
  t.throws(() => verifySshCertificate(host, trusted), /wrong type/)

  const empty = parseSshCertificate(createSshCertificate(userRequest(ca.privateKey, { principals: [] })))
  t.throws(() => verifySshCertificate(empty, { ...trusted, principal: 'root' }), /does not list principal/, 'no principals is not "any principal"')

  const restricted = parseSshCertificate(createSshCertificate(userRequest(ca.privateKey, { criticalOptions: { 'force-command': 'uptime' } })))
  t.throws(() => verifySshCertificate(restricted, trusted), /unsupported critical option "force-command"/)
  t.doesNotThrow(() => verifySshCertificate(restricted, { ...trusted, allowedCriticalOptions: ['force-command'] }))
})

t.test('the signature alone: by a trusted CA, and whole, whatever the dates and type', async (t) => {
  const ca = ed25519()
  const expired = parseSshCertificate(createSshCertificate(userRequest(ca.privateKey, { type: 'host', validBefore: new Date(NOW.getTime() - HOUR) })))
  t.doesNotThrow(() => verifySshCertificateSignature(expired, [ca.publicKey]))
  t.doesNotThrow(() => verifySshCertificateSignature(expired, [expired.signatureKey]), 'the key the certificate names, on first use')
  t.throws(() => verifySshCertificateSignature(expired, [ed25519().publicKey]), /untrusted CA/)
  const forged = parseSshCertificate(createSshCertificate(userRequest(ed25519().privateKey)))
  t.throws(() => verifySshCertificateSignature({ ...forged, signatureKey: ca.publicKey }, [ca.publicKey]), /bad signature/)
})

t.test('certificates from ssh-keygen -s parse and verify', async (t) => {
  const dir = t.testdir()
  const ca = join(dir, 'ca')
  const user = join(dir, 'user')
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'ca', '-f', ca])
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'user', '-f', user])
  execFileSync('ssh-keygen', ['-q', '-s', ca, '-I', 'id', '-n', 'root', '-V', '+1h', `${user}.pub`])
  const caKey = parseSshPublicKey(readFileSync(`${ca}.pub`, 'utf8'))
  const cert = parseSshCertificate(readFileSync(`${user}-cert.pub`, 'utf8'))
  t.equal(cert.type, 'user')
  t.equal(cert.keyId, 'id')
  t.same(cert.principals, ['root'])
  t.same(Object.keys(cert.extensions), ['permit-X11-forwarding', 'permit-agent-forwarding', 'permit-port-forwarding', 'permit-pty', 'permit-user-rc'])
  t.ok(keyBlob(cert.publicKey).equals(keyBlob(parseSshPublicKey(readFileSync(`${user}.pub`, 'utf8')))))
  t.doesNotThrow(() => verifySshCertificate(cert, { trustedCaKeys: [caKey], type: 'user', principal: 'root' }))
  t.throws(() => verifySshCertificate(cert, { trustedCaKeys: [caKey], type: 'user', principal: 'admin' }), /principal/)
  t.throws(() => verifySshCertificate(cert, { trustedCaKeys: [ed25519().publicKey], type: 'user' }), /untrusted CA/)
  t.throws(() => verifySshCertificate(cert, { trustedCaKeys: [caKey], type: 'user', now: new Date(Date.now() + 2 * HOUR) }), /expired/)

  execFileSync('ssh-keygen', ['-q', '-s', ca, '-I', 'host-id', '-h', '-n', 'node-1', '-V', 'always:forever', `${user}.pub`])
  const hostCert = parseSshCertificate(readFileSync(`${user}-cert.pub`, 'utf8'))
  t.equal(hostCert.validBefore.getTime(), SSH_CERT_FOREVER.getTime())
  t.doesNotThrow(() => verifySshCertificate(hostCert, { trustedCaKeys: [caKey], type: 'host', principal: 'node-1', now: new Date(4e15) }))
})

t.test('malformed input only ever throws an Error', async (t) => {
  const ca = ed25519()
  const line = createSshCertificate(userRequest(ca.privateKey, { criticalOptions: { 'force-command': 'ls' } }))
  const blob = Buffer.from(line.split(' ')[1], 'base64')
  const inputs: Array<Buffer | string> = []
  for (let length = 0; length < blob.length; length++) inputs.push(blob.subarray(0, length))
  while (inputs.length < 3000) inputs.push(randomBytes(randomInt(0, 400)))
  while (inputs.length < 8000) {
    const mutated = Buffer.from(blob)
    for (let i = randomInt(1, 4); i > 0; i--) {
      const at = randomInt(0, mutated.length - 4)
      const how = randomInt(0, 3)
      // Flip a byte, or plant a huge or a slightly-off length where a length might be.
      if (how === 0) mutated[at] ^= 1 << randomInt(0, 8)
      else if (how === 1) mutated.writeUInt32BE(0xffffffff, at)
      else mutated.writeUInt32BE((mutated.readUInt32BE(at) + randomInt(-3, 4)) >>> 0, at)
    }
    inputs.push(mutated)
  }
  while (inputs.length < 10_000) {
    const text = line.slice(0, randomInt(0, line.length))
    inputs.push(randomInt(0, 2) ? text : text + randomBytes(8).toString('latin1'))
  }

  let parsed = 0
  const notErrors: unknown[] = []
  for (const input of inputs) {
    try {
      parseSshCertificate(input)
      parsed++
    } catch (err) {
      if (!(err instanceof Error) || !err.message) notErrors.push(err)
    }
  }
  t.same(notErrors, [], 'every failure is an Error with a message')
  t.ok(parsed > 0 && parsed < inputs.length, `${parsed} of ${inputs.length} inputs still parsed`)
  t.throws(() => parseSshCertificate(Buffer.alloc(0)), /truncated/)
  t.throws(() => parseSshCertificate('ssh-ed25519 AAAA'), /unsupported SSH certificate type "ssh-ed25519"/)
  t.throws(() => parseSshCertificate(Buffer.concat([blob, Buffer.of(0)])), /trailing data/)
})

t.test('requests that cannot make a certificate are refused', async (t) => {
  const ca = ed25519()
  t.throws(() => createSshCertificate(userRequest(ca.publicKey)), /Ed25519 private key/)
  t.throws(() => createSshCertificate(userRequest(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey)), /Ed25519 private key/)
  t.throws(() => createSshCertificate(userRequest(ca.privateKey, { serial: -1n })), /out of range/)
  t.throws(() => createSshCertificate(userRequest(ca.privateKey, { serial: 1n << 64n })), /out of range/)
  t.throws(() => createSshCertificate(userRequest(ca.privateKey, { validBefore: new Date(NaN) })), /not a valid date/)
})
