// X.509 v3 certificates: the cluster CAs and the TLS identities they issue, and the proxy's
// ACME challenge certificates (through `extensions`). The DER is built directly
// (shared/der.ts) and signed with node:crypto, so one certificate costs little more than its
// signature: the auth server must keep up with bursts of joins.

import { createHash, createPublicKey, generateKeyPairSync, type KeyObject, randomBytes, sign } from 'node:crypto'
import { isIPv4, isIPv6 } from 'node:net'
import { bitString, boolean, explicit, implicit, integer, namedBits, octetString, oid, readElement, sequence, set, time, utf8String } from './der.ts'

export interface DistinguishedName {
  CN?: string
  O?: string
  OU?: string[]
  /** The X.520 `name` attribute (OID 2.5.4.41). */
  name?: string
}

export interface CertificateRequest {
  subject: DistinguishedName
  issuer: DistinguishedName
  /** The subject's public key: EC P-256, Ed25519 or RSA. */
  publicKey: KeyObject
  /** The issuer's private key: EC P-256 (ecdsa-with-SHA256) or Ed25519. */
  signingKey: KeyObject
  /** Names the issuer in authorityKeyIdentifier; defaults to the public half of signingKey. */
  issuerPublicKey?: KeyObject
  /** Defaults to 16 random bytes with the high bit cleared. */
  serialNumber?: Buffer
  notBefore: Date
  notAfter: Date
  isCA?: boolean
  dnsNames?: string[]
  /** IPv4 or IPv6 addresses for subjectAltName. */
  ipAddresses?: string[]
  extKeyUsage?: Array<'serverAuth' | 'clientAuth'>
  /** Extensions beyond those the fields above make, appended after them. */
  extensions?: CertificateExtension[]
}

/** One extension (RFC 5280 4.1.2.9). */
export interface CertificateExtension {
  /** Dotted form, e.g. "1.3.6.1.5.5.7.1.31". */
  oid: string
  critical: boolean
  /** The DER that extnValue holds. */
  value: Buffer
}

const VERSION_3 = explicit(0, integer(2))
const ECDSA_WITH_SHA256 = sequence(oid('1.2.840.10045.4.3.2'))
const ED25519 = sequence(oid('1.3.101.112'))

const ATTRIBUTE = { CN: oid('2.5.4.3'), O: oid('2.5.4.10'), OU: oid('2.5.4.11'), name: oid('2.5.4.41') }

const EXTENSION = {
  subjectKeyIdentifier: oid('2.5.29.14'),
  keyUsage: oid('2.5.29.15'),
  subjectAltName: oid('2.5.29.17'),
  basicConstraints: oid('2.5.29.19'),
  authorityKeyIdentifier: oid('2.5.29.35'),
  extKeyUsage: oid('2.5.29.37'),
}

const KEY_PURPOSE = { serverAuth: oid('1.3.6.1.5.5.7.3.1'), clientAuth: oid('1.3.6.1.5.5.7.3.2') }

const KEY_USAGE = { digitalSignature: 0, keyEncipherment: 2, keyCertSign: 5, cRLSign: 6 }

const MAX_SERIAL_OCTETS = 20 // RFC 5280 4.1.2.2

export function createCertificate(req: CertificateRequest): string {
  if (!(req.notBefore.getTime() < req.notAfter.getTime())) throw new Error('certificate notAfter must be later than notBefore')
  const algorithm = signatureAlgorithm(req.signingKey)
  const spki = subjectPublicKeyInfo(req.publicKey)
  const subject = encodeName(req.subject)
  const serial = integer(req.serialNumber ?? defaultSerial())
  if (serial.length - 2 > MAX_SERIAL_OCTETS) throw new Error(`certificate serial number longer than ${MAX_SERIAL_OCTETS} octets`)

  const tbs = sequence(
    VERSION_3,
    serial,
    algorithm,
    encodeName(req.issuer),
    sequence(time(req.notBefore), time(req.notAfter)),
    subject,
    spki,
    explicit(3, sequence(...extensions(req, spki, subject))),
  )
  const signature = sign(algorithm === ED25519 ? null : 'sha256', tbs, req.signingKey)
  return toPem(sequence(tbs, algorithm, bitString(signature)))
}

/** A self-signed ECDSA P-256 CA, valid from a minute ago to tolerate clock skew. */
export function createCA(commonName: string, organization: string, validityDays = 3650): { key: KeyObject; certPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const now = Date.now()
  const name = { CN: commonName, O: organization }
  const certPem = createCertificate({
    subject: name,
    issuer: name,
    publicKey,
    signingKey: privateKey,
    issuerPublicKey: publicKey,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + validityDays * 86_400_000),
    isCA: true,
  })
  return { key: privateKey, certPem }
}

// Each CA key signs many certificates; look its algorithm up once.
const signatureAlgorithms = new WeakMap<KeyObject, Buffer>()

function signatureAlgorithm(signingKey: KeyObject): Buffer {
  let algorithm = signatureAlgorithms.get(signingKey)
  if (!algorithm) {
    if (signingKey.type !== 'private') throw new Error('certificate signingKey must be a private key')
    if (signingKey.asymmetricKeyType === 'ed25519') algorithm = ED25519
    else if (signingKey.asymmetricKeyType === 'ec' && signingKey.asymmetricKeyDetails?.namedCurve === 'prime256v1') algorithm = ECDSA_WITH_SHA256
    else throw new Error(`unsupported certificate signing key: ${signingKey.asymmetricKeyType} (use EC P-256 or Ed25519)`)
    signatureAlgorithms.set(signingKey, algorithm)
  }
  return algorithm
}

// Serials come from a pool of CSPRNG bytes: one call into the CSPRNG per 256 certificates.
const SERIAL_BYTES = 16
let serialPool = Buffer.alloc(0)
let serialPoolOffset = 0

function defaultSerial(): Buffer {
  if (serialPoolOffset + SERIAL_BYTES > serialPool.length) {
    serialPool = randomBytes(SERIAL_BYTES * 256)
    serialPoolOffset = 0
  }
  const serial = serialPool.subarray(serialPoolOffset, serialPoolOffset + SERIAL_BYTES)
  serialPoolOffset += SERIAL_BYTES
  serial[0] &= 0x7f // a positive INTEGER of at most 16 octets
  return serial
}

function encodeName(dn: DistinguishedName): Buffer {
  const rdns: Buffer[] = []
  const add = (type: Buffer, value: string) => rdns.push(set(sequence(type, utf8String(value))))
  if (dn.O !== undefined) add(ATTRIBUTE.O, dn.O)
  for (const unit of dn.OU ?? []) add(ATTRIBUTE.OU, unit)
  if (dn.CN !== undefined) add(ATTRIBUTE.CN, dn.CN)
  if (dn.name !== undefined) add(ATTRIBUTE.name, dn.name)
  return sequence(...rdns)
}

function extensions(req: CertificateRequest, spki: Buffer, subject: Buffer): Buffer[] {
  const list: Buffer[] = []
  if (req.isCA) {
    list.push(extension(EXTENSION.basicConstraints, true, sequence(boolean(true))))
    list.push(extension(EXTENSION.keyUsage, true, namedBits([KEY_USAGE.keyCertSign, KEY_USAGE.cRLSign])))
  } else {
    list.push(extension(EXTENSION.basicConstraints, true, sequence()))
    const usage = [KEY_USAGE.digitalSignature]
    if (req.publicKey.asymmetricKeyType === 'rsa') usage.push(KEY_USAGE.keyEncipherment)
    list.push(extension(EXTENSION.keyUsage, true, namedBits(usage)))
  }
  if (req.extKeyUsage?.length) {
    list.push(extension(EXTENSION.extKeyUsage, false, sequence(...req.extKeyUsage.map((purpose) => KEY_PURPOSE[purpose]))))
  }
  const altNames = [...(req.dnsNames ?? []).map((dns) => implicit(2, dnsNameBytes(dns))), ...(req.ipAddresses ?? []).map((ip) => implicit(7, ipAddressBytes(ip)))]
  if (altNames.length) {
    // With an empty subject the alternative names are the identity, so they must be critical.
    const emptySubject = subject.length === 2
    list.push(extension(EXTENSION.subjectAltName, emptySubject, sequence(...altNames)))
  }
  list.push(extension(EXTENSION.subjectKeyIdentifier, false, octetString(keyIdentifier(spki))))
  const issuerKeyId = issuerKeyIdentifier(req.issuerPublicKey ?? req.signingKey)
  list.push(extension(EXTENSION.authorityKeyIdentifier, false, sequence(implicit(0, issuerKeyId))))
  if (req.extensions?.length) {
    // RFC 5280 4.2: a certificate must not hold an extension twice.
    const seen = new Set(Object.values(EXTENSION).map((id) => id.toString('hex')))
    for (const extra of req.extensions) {
      const id = oid(extra.oid)
      if (seen.has(id.toString('hex'))) throw new Error(`certificate extension ${extra.oid} is given twice or is one the request's fields make`)
      seen.add(id.toString('hex'))
      list.push(extension(id, extra.critical, extra.value))
    }
  }
  return list
}

function extension(id: Buffer, critical: boolean, value: Buffer): Buffer {
  return critical ? sequence(id, boolean(true), octetString(value)) : sequence(id, octetString(value))
}

/** RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING contents. */
function keyIdentifier(spki: Buffer): Buffer {
  const info = readElement(spki)
  const algorithm = readElement(info.contents)
  const key = readElement(info.contents, algorithm.end)
  return createHash('sha1').update(key.contents.subarray(1)).digest()
}

// SubjectPublicKeyInfo prefixes for the fixed-size keys: rebuilding the DER from the raw
// key (JWK) is several times cheaper than asking OpenSSL to encode it.
const EC_P256_SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex')
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

function subjectPublicKeyInfo(key: KeyObject): Buffer {
  if (key.asymmetricKeyType === 'ed25519') {
    return Buffer.concat([ED25519_SPKI_PREFIX, Buffer.from(key.export({ format: 'jwk' }).x!, 'base64url')])
  }
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') {
    const { x, y } = key.export({ format: 'jwk' })
    return Buffer.concat([EC_P256_SPKI_PREFIX, Buffer.of(4), Buffer.from(x!, 'base64url'), Buffer.from(y!, 'base64url')])
  }
  const publicKey = key.type === 'private' ? createPublicKey(key) : key
  return publicKey.export({ type: 'spki', format: 'der' })
}

// The issuer key is the same for every certificate a CA signs; remember its identifier.
const issuerKeyIds = new WeakMap<KeyObject, Buffer>()

function issuerKeyIdentifier(key: KeyObject): Buffer {
  let id = issuerKeyIds.get(key)
  if (!id) {
    id = keyIdentifier(subjectPublicKeyInfo(key))
    issuerKeyIds.set(key, id)
  }
  return id
}

/** dNSName is an IA5String: ASCII only (internationalised names go in A-label form). */
function dnsNameBytes(dns: string): Buffer {
  if (!/^[\x21-\x7e]+$/.test(dns)) throw new Error(`invalid DNS name for a certificate: ${JSON.stringify(dns)}`)
  return Buffer.from(dns, 'latin1')
}

function ipAddressBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number))
  if (!isIPv6(ip) || ip.includes('%')) throw new Error(`invalid IP address for a certificate: ${ip}`)
  const [head, tail] = ip.split('::')
  const words = (part: string | undefined): number[] => {
    if (!part) return []
    return part.split(':').flatMap((group) => {
      if (!group.includes('.')) return [parseInt(group, 16)]
      const [a, b, c, d] = group.split('.').map(Number)
      return [(a << 8) | b, (c << 8) | d]
    })
  }
  const first = words(head)
  const last = words(tail)
  const all = tail === undefined ? first : [...first, ...new Array<number>(8 - first.length - last.length).fill(0), ...last]
  const bytes = Buffer.alloc(16)
  all.forEach((word, i) => {
    bytes.writeUInt16BE(word, i * 2)
  })
  return bytes
}

function toPem(der: Buffer): string {
  const base64 = der.toString('base64')
  let body = ''
  for (let i = 0; i < base64.length; i += 64) body += base64.slice(i, i + 64) + '\n'
  return `-----BEGIN CERTIFICATE-----\n${body}-----END CERTIFICATE-----\n`
}
