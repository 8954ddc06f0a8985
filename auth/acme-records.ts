// Where the proxies keep their ACME account key and web certificates: in the cluster's
// backend, so that a restarted proxy reuses them and every proxy of the cluster shares one
// account and one certificate per name instead of each asking the ACME CA. Only proxies
// read or write them (the records hold private keys).

import { MAX_ACME_RECORD_BYTES } from '../shared/protocol/proxies.ts'
import type { Backend } from './backend/backend.ts'

const PREFIX = '/acme/'
// The names proxy/acme's CertStore uses: `acme/account` and `acme/cert/<domain>`.
const RECORD_NAME = /^acme\/(account|cert\/[a-z0-9.-]{1,253})$/
export const MAX_RECORD_BYTES = MAX_ACME_RECORD_BYTES

/** A record name proxies do not use, or a record too large. */
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
    if (Buffer.byteLength(value) > MAX_RECORD_BYTES) throw new AcmeRecordError(`ACME record ${name} is larger than ${MAX_RECORD_BYTES} bytes`)
    await this.backend.put(backendKey(name), value)
  }
}

function backendKey(name: string): string {
  if (!RECORD_NAME.test(name)) throw new AcmeRecordError(`not an ACME record name: ${JSON.stringify(name)} (acme/account or acme/cert/<domain>)`)
  return PREFIX + name.slice('acme/'.length)
}
