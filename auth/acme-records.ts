// Where the proxies keep their ACME account key and web certificates: in the cluster's
// backend, so that a restarted proxy reuses them and every proxy of the cluster shares one
// account and one certificate per name instead of each asking the ACME CA. Only proxies
// read or write them (the records hold private keys).
//
// The account is created once: a write with another key than the stored one is refused, so
// a stolen proxy cannot hand every proxy an account of its own. Certificates are checked by
// the proxies that serve them (proxy/acme/cert-store.ts checkServable).

import { createPrivateKey, createPublicKey } from 'node:crypto'
import { MAX_ACME_RECORD_BYTES } from '../shared/protocol/proxies.ts'
import type { Backend } from './backend/backend.ts'

const PREFIX = '/acme/'
// The names proxy/acme's CertStore uses: `acme/account` and `acme/cert/<domain>`.
const RECORD_NAME = /^acme\/(account|cert\/[a-z0-9.-]{1,253})$/
const ACCOUNT = 'acme/account'
export const MAX_RECORD_BYTES = MAX_ACME_RECORD_BYTES

/** A record name proxies do not use, a record too large, or an account record refused. */
export class AcmeRecordError extends Error {}

export class AcmeRecords {
  private readonly backend: Backend

  constructor(backend: Backend) {
    this.backend = backend
  }

  async get(name: string): Promise<string | undefined> {
    return (await this.backend.get(backendKey(name)))?.value
  }

  async put(name: string, value: string): Promise<void> {
    const key = backendKey(name)
    if (Buffer.byteLength(value) > MAX_RECORD_BYTES) throw new AcmeRecordError(`ACME record ${name} is larger than ${MAX_RECORD_BYTES} bytes`)
    if (name === ACCOUNT) return this.putAccount(key, value)
    await this.backend.put(key, value)
  }

  /**
   * Creates the account, or updates it for the same key (proxies add the account's URL once
   * registered). A record that cannot be read may be replaced: every write is checked, so
   * only damage makes one.
   */
  private async putAccount(key: string, value: string): Promise<void> {
    const publicKey = accountPublicKey(value)
    if (!publicKey) throw new AcmeRecordError('the ACME account record must be JSON with keyPem, a private key in PEM')
    // Compare-and-swap on the revision read, so that two proxies creating it at once keep one key.
    for (let attempt = 0; attempt < 3; attempt++) {
      const current = await this.backend.get(key)
      const held = current && accountPublicKey(current.value)
      if (held && !held.equals(publicKey)) {
        throw new AcmeRecordError('the ACME account exists with another key; proxies share it and cannot replace it')
      }
      const condition = current ? { key, revision: current.revision } : { key, absent: true as const }
      if (await this.backend.txn([condition], [{ op: 'put', key, value }])) return
    }
    throw new AcmeRecordError('the ACME account record changed during the write; try again')
  }
}

function backendKey(name: string): string {
  if (!RECORD_NAME.test(name)) throw new AcmeRecordError(`not an ACME record name: ${JSON.stringify(name)} (acme/account or acme/cert/<domain>)`)
  return PREFIX + name.slice('acme/'.length)
}

/** The account key's public half (SPKI DER), or undefined when the record cannot be read. */
function accountPublicKey(text: string): Buffer | undefined {
  try {
    const { keyPem } = JSON.parse(text) as { keyPem?: unknown }
    if (typeof keyPem !== 'string') return undefined
    return createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'der' })
  } catch {
    return undefined
  }
}
