// OpenSSH certificates (PROTOCOL.certkeys) for Ed25519 keys: the user CA signs short-lived
// user certificates and the host CA signs node identities. Parsing treats every input as
// hostile (shared/ssh-wire.ts checks each length against what remains).

import { createPublicKey, type KeyObject, randomBytes, sign, verify } from 'node:crypto'
import { isoTime } from './duration.ts'
import { SshReader, sshString, uint32, uint64 } from './ssh-wire.ts'

const KEY_TYPE = 'ssh-ed25519'
const CERT_TYPE = 'ssh-ed25519-cert-v01@openssh.com'
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')
const CERT_TYPE_CODE = { user: 1, host: 2 } as const
const UINT64_MAX = 0xffff_ffff_ffff_ffffn
/** The latest instant a Date can hold; as validBefore it encodes "forever" (all ones). */
export const SSH_CERT_FOREVER = new Date(8.64e15)

const DEFAULT_USER_EXTENSIONS: Record<string, string> = {
  'permit-X11-forwarding': '',
  'permit-agent-forwarding': '',
  'permit-port-forwarding': '',
  'permit-pty': '',
  'permit-user-rc': '',
}

export interface SshCertificateRequest {
  publicKey: KeyObject
  /** The CA's Ed25519 private key. */
  caKey: KeyObject
  type: 'user' | 'host'
  keyId: string
  principals: string[]
  validAfter: Date
  /** SSH_CERT_FOREVER for a certificate that never expires. */
  validBefore: Date
  /** Defaults to 0, as ssh-keygen does. */
  serial?: bigint
  /** User certificates default to the usual permit-* set, host certificates to none. */
  extensions?: Record<string, string>
  criticalOptions?: Record<string, string>
}

export interface ParsedSshCertificate {
  keyType: string
  nonce: Buffer
  publicKey: KeyObject
  serial: bigint
  type: 'user' | 'host'
  keyId: string
  principals: string[]
  validAfter: Date
  validBefore: Date
  criticalOptions: Record<string, string>
  extensions: Record<string, string>
  signatureKey: KeyObject
  /** Everything the CA signed: the blob up to the signature field. */
  signedData: Buffer
  /** The raw 64-byte Ed25519 signature. */
  signature: Buffer
}

export interface SshVerifyOptions {
  trustedCaKeys: KeyObject[]
  type: 'user' | 'host'
  /** When given, the certificate must list it among its principals. */
  principal?: string
  now?: Date
  /** Critical options the caller enforces; a certificate carrying any other is refused. */
  allowedCriticalOptions?: string[]
}

/** "ssh-ed25519 AAAA... comment" for an Ed25519 public or private key. */
export function sshPublicKeyLine(key: KeyObject, comment?: string): string {
  const line = `${KEY_TYPE} ${publicKeyBlob(key).toString('base64')}`
  return comment ? `${line} ${comment}` : line
}

export function parseSshPublicKey(line: string): KeyObject {
  const [type, base64] = line.trim().split(/\s+/)
  if (type !== KEY_TYPE) throw new Error(`unsupported SSH public key type ${JSON.stringify(type)}: only ${KEY_TYPE} is accepted`)
  const reader = new SshReader(decodeBase64(base64, 'SSH public key'), 'SSH public key')
  const key = readEd25519PublicKey(reader)
  reader.expectEnd()
  return key
}

/** The "ssh-ed25519-cert-v01@openssh.com AAAA..." line of a new certificate. */
export function createSshCertificate(req: SshCertificateRequest): string {
  if (req.caKey.type !== 'private' || req.caKey.asymmetricKeyType !== 'ed25519') {
    throw new Error('SSH certificate caKey must be an Ed25519 private key')
  }
  const serial = req.serial ?? 0n
  if (serial < 0n || serial > UINT64_MAX) throw new Error(`SSH certificate serial ${serial} is out of range`)
  const extensions = req.extensions ?? (req.type === 'user' ? DEFAULT_USER_EXTENSIONS : {})
  const signed = Buffer.concat([
    sshString(CERT_TYPE),
    sshString(randomBytes(32)),
    sshString(rawEd25519(req.publicKey)),
    uint64(serial),
    uint32(CERT_TYPE_CODE[req.type]),
    sshString(req.keyId),
    sshString(Buffer.concat(req.principals.map((principal) => sshString(principal)))),
    uint64(toSeconds(req.validAfter)),
    uint64(toSeconds(req.validBefore)),
    sshString(encodeOptions(req.criticalOptions ?? {})),
    sshString(encodeOptions(extensions)),
    sshString(''), // reserved
    sshString(publicKeyBlob(req.caKey)),
  ])
  const signature = Buffer.concat([sshString(KEY_TYPE), sshString(sign(null, signed, req.caKey))])
  return `${CERT_TYPE} ${Buffer.concat([signed, sshString(signature)]).toString('base64')}`
}

/** Parses a certificate from its blob or its text line; any malformed input throws an Error. */
export function parseSshCertificate(blobOrLine: Buffer | string): ParsedSshCertificate {
  let blob: Buffer
  if (typeof blobOrLine === 'string') {
    const [type, base64] = blobOrLine.trim().split(/\s+/)
    if (type !== CERT_TYPE) throw new Error(`unsupported SSH certificate type ${JSON.stringify(type)}: only ${CERT_TYPE} is accepted`)
    blob = decodeBase64(base64, 'SSH certificate')
  } else {
    blob = blobOrLine
  }
  const reader = new SshReader(blob, 'SSH certificate')
  const keyType = reader.readText()
  if (keyType !== CERT_TYPE) throw new Error(`unsupported SSH certificate type ${JSON.stringify(keyType)}: only ${CERT_TYPE} is accepted`)
  const nonce = reader.readString()
  const publicKey = ed25519FromRaw(reader.readString())
  const serial = reader.readUint64()
  const typeCode = reader.readUint32()
  const type = typeCode === CERT_TYPE_CODE.user ? 'user' : typeCode === CERT_TYPE_CODE.host ? 'host' : undefined
  if (!type) throw new Error(`SSH certificate has unknown certificate type ${typeCode}`)
  const keyId = reader.readText()
  const principalReader = new SshReader(reader.readString(), 'SSH certificate principals')
  const principals: string[] = []
  while (!principalReader.atEnd()) principals.push(principalReader.readText())
  const validAfter = fromSeconds(reader.readUint64())
  const validBefore = fromSeconds(reader.readUint64())
  const criticalOptions = decodeOptions(reader.readString(), 'critical options')
  const extensions = decodeOptions(reader.readString(), 'extensions')
  reader.readString() // reserved
  const signatureKeyReader = new SshReader(reader.readString(), 'SSH certificate signature key')
  const signatureKey = readEd25519PublicKey(signatureKeyReader)
  signatureKeyReader.expectEnd()
  const signedData = blob.subarray(0, reader.offset)
  const signatureReader = new SshReader(reader.readString(), 'SSH certificate signature')
  const signatureType = signatureReader.readText()
  if (signatureType !== KEY_TYPE) throw new Error(`unsupported SSH certificate signature type ${JSON.stringify(signatureType)}`)
  const signature = signatureReader.readString()
  if (signature.length !== 64) throw new Error('SSH certificate signature has the wrong length')
  signatureReader.expectEnd()
  reader.expectEnd()
  return {
    keyType,
    nonce,
    publicKey,
    serial,
    type,
    keyId,
    principals,
    validAfter,
    validBefore,
    criticalOptions,
    extensions,
    signatureKey,
    signedData,
    signature,
  }
}

/** Throws an Error unless one of `trustedCaKeys` signed the certificate (the key it names as its signer, and the signature verifies). */
export function verifySshCertificateSignature(cert: ParsedSshCertificate, trustedCaKeys: KeyObject[]): void {
  const caKey = rawEd25519(cert.signatureKey)
  if (!trustedCaKeys.some((trusted) => isEd25519(trusted) && rawEd25519(trusted).equals(caKey))) {
    throw new Error('SSH certificate is signed by an untrusted CA')
  }
  if (!verify(null, cert.signedData, cert.signatureKey, cert.signature)) {
    throw new Error('SSH certificate has a bad signature')
  }
}

/** Throws an Error naming the first reason the certificate cannot be accepted. */
export function verifySshCertificate(cert: ParsedSshCertificate, opts: SshVerifyOptions): void {
  verifySshCertificateSignature(cert, opts.trustedCaKeys)
  if (cert.type !== opts.type) {
    throw new Error(`SSH certificate has the wrong type: it is a ${cert.type} certificate, a ${opts.type} certificate is required`)
  }
  const now = opts.now ?? new Date()
  if (now.getTime() < cert.validAfter.getTime()) {
    throw new Error(`SSH certificate is not yet valid: valid from ${isoTime(cert.validAfter.getTime())}`)
  }
  if (now.getTime() >= cert.validBefore.getTime()) {
    throw new Error(`SSH certificate has expired: valid until ${isoTime(cert.validBefore.getTime())}`)
  }
  const allowed = opts.allowedCriticalOptions ?? []
  for (const option of Object.keys(cert.criticalOptions)) {
    if (!allowed.includes(option)) throw new Error(`SSH certificate has unsupported critical option ${JSON.stringify(option)}`)
  }
  if (opts.principal !== undefined && !cert.principals.includes(opts.principal)) {
    throw new Error(`SSH certificate does not list principal ${JSON.stringify(opts.principal)}`)
  }
}

/** Options sorted by name; a non-empty value is itself wrapped as a string, per the spec. */
function encodeOptions(options: Record<string, string>): Buffer {
  const names = Object.keys(options).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
  return Buffer.concat(names.flatMap((name) => [sshString(name), sshString(options[name] === '' ? Buffer.alloc(0) : sshString(options[name]))]))
}

function decodeOptions(data: Buffer, what: string): Record<string, string> {
  const reader = new SshReader(data, `SSH certificate ${what}`)
  const options: Record<string, string> = Object.create(null)
  while (!reader.atEnd()) {
    const name = reader.readText()
    if (Object.hasOwn(options, name)) throw new Error(`SSH certificate ${what} repeat ${JSON.stringify(name)}`)
    const data = reader.readString()
    if (data.length === 0) {
      options[name] = ''
    } else {
      const inner = new SshReader(data, `SSH certificate option ${JSON.stringify(name)}`)
      options[name] = inner.readText()
      inner.expectEnd()
    }
  }
  return options
}

function readEd25519PublicKey(reader: SshReader): KeyObject {
  const type = reader.readText()
  if (type !== KEY_TYPE) throw new Error(`unsupported SSH key type ${JSON.stringify(type)}: only ${KEY_TYPE} is accepted`)
  return ed25519FromRaw(reader.readString())
}

function ed25519FromRaw(raw: Buffer): KeyObject {
  if (raw.length !== 32) throw new Error('Ed25519 public key has the wrong length')
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' })
}

function isEd25519(key: KeyObject): boolean {
  return key.asymmetricKeyType === 'ed25519'
}

function rawEd25519(key: KeyObject): Buffer {
  if (!isEd25519(key)) throw new Error(`unsupported SSH key: ${key.asymmetricKeyType} (only Ed25519 is accepted)`)
  return Buffer.from(key.export({ format: 'jwk' }).x!, 'base64url')
}

function publicKeyBlob(key: KeyObject): Buffer {
  return Buffer.concat([sshString(KEY_TYPE), sshString(rawEd25519(key))])
}

function decodeBase64(text: string | undefined, what: string): Buffer {
  if (!text || !/^[A-Za-z0-9+/]+={0,2}$/.test(text) || text.length % 4 !== 0) throw new Error(`${what} is not valid base64`)
  return Buffer.from(text, 'base64')
}

function toSeconds(date: Date): bigint {
  const ms = date.getTime()
  if (Number.isNaN(ms)) throw new Error('SSH certificate validity is not a valid date')
  if (ms >= SSH_CERT_FOREVER.getTime()) return UINT64_MAX
  if (ms < 0) throw new Error('SSH certificate validity cannot precede 1970')
  return BigInt(Math.floor(ms / 1000))
}

/** Seconds since the epoch; values beyond what a Date holds (such as "forever") clamp to it. */
function fromSeconds(seconds: bigint): Date {
  return seconds * 1000n >= BigInt(SSH_CERT_FOREVER.getTime()) ? new Date(SSH_CERT_FOREVER) : new Date(Number(seconds) * 1000)
}
