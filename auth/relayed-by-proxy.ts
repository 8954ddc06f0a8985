// What a proxy carries to the auth server in a tunnelled node's name (audit events, session
// recordings) is taken only as that node signed it with its registered TLS key
// (shared/node-signature.ts): a proxy, or whoever holds its keys, can pass it on or drop it,
// but not change it or write its own. Nodes of earlier versions do not sign; their batches
// are taken as before until the host's first signed one, after which nothing unsigned is
// taken in its name (the registry remembers it: signsRelayed).

import { HttpError } from '../shared/api-router.ts'
import { type NodeSignature, type SignedContent, signingKeyOf } from '../shared/node-signature.ts'
import type { AuthContext } from './api/context.ts'
import { type NodeRecord, UnregisteredHost } from './nodes.ts'

/** The registered host whose content this is, once it is judged the host's own; throws HttpError 400 otherwise. */
export async function judgeRelayed(context: AuthContext, hostId: string, content: SignedContent, signature: NodeSignature | undefined): Promise<NodeRecord> {
  const registered = await context.nodes.lookup(hostId)
  if (!registered) throw new UnregisteredHost(hostId)
  const what = content.kind === 'audit events' ? 'the audit events are' : 'the recording chunk is'
  if (signature === undefined) {
    if (registered.signsRelayed) throw new HttpError(400, `${what} not signed by host ${hostId}, which signs what proxies carry for it`)
    return registered
  }
  const key = signingKeyOf(hostId, content, signature)
  if (key === undefined || (registered.tlsKeySha256 !== undefined && key !== registered.tlsKeySha256)) {
    throw new HttpError(400, `${what} not signed by the key registered for host ${hostId}`)
  }
  // A host registered before keys were recorded cannot be told from whoever signed: it stays as unsigned ones are.
  if (registered.tlsKeySha256 !== undefined && !registered.signsRelayed) await context.nodes.recordSignsRelayed(hostId)
  return registered
}
