// The cluster's login sealing key (shared/sealed-login.ts): an X25519 key pair kept in the
// backend, so that every auth server sharing it opens what a client sealed for any of them.
// Made at the first start; two servers racing agree on one, as with the join challenge
// secret.

import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { ProtocolError } from '../shared/protocol/errors.ts'
import { openSealed, type Sealed, type SealingKeyStatement, sealAnswer, signSealingKey } from '../shared/sealed-login.ts'
import type { TrustSigner } from '../shared/trust-statement.ts'
import type { Backend } from './backend/backend.ts'

const KEY = '/cluster/login-sealing-key'

export class LoginSealing {
  readonly publicKey: KeyObject
  private readonly privateKey: KeyObject
  /** The statement last signed, and by which CA certificates: signed again only when they change (a rotation). */
  private signed?: { by: string; statement: SealingKeyStatement }

  private constructor(privateKey: KeyObject) {
    this.privateKey = privateKey
    this.publicKey = createPublicKey(privateKey)
  }

  static async open(backend: Backend): Promise<LoginSealing> {
    const made = generateKeyPairSync('x25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
    await backend.create(KEY, made)
    const item = await backend.get(KEY)
    if (!item) throw new Error('the login sealing key vanished while being created')
    return new LoginSealing(createPrivateKey(item.value))
  }

  /**
   * The key, signed by `signers` (the host CA's key sets): it goes with every challenge, joins'
   * too, so it is signed once for each set of CA keys, not for every answer (bench:join).
   */
  statement(clusterName: string, signers: TrustSigner[]): SealingKeyStatement {
    const by = JSON.stringify([clusterName, signers.map((signer) => signer.certPem)])
    if (this.signed?.by !== by) this.signed = { by, statement: signSealingKey(clusterName, this.publicKey, signers) }
    return this.signed.statement
  }

  /** What `sealed` holds, for `purpose`, and how to seal the answer; a ProtocolError (400) for a box that does not open. */
  open(route: string, purpose: string, sealed: Sealed): { value: unknown; sealAnswer: (value: unknown) => string } {
    try {
      const { value, replyKey } = openSealed({ privateKey: this.privateKey, publicKey: this.publicKey }, purpose, sealed)
      return { value, sealAnswer: (answer) => sealAnswer(replyKey, answer) }
    } catch {
      throw new ProtocolError(route, 'sealed', 'field "sealed" does not open with this cluster\'s sealing key for this request')
    }
  }
}
