// What a proxy carries to the auth server in a tunnelled node's name (audit events, session
// recordings) is taken only as that node signed it with its registered TLS key
// (shared/node-signature.ts): a proxy, or whoever holds its keys, can pass it on or drop it,
// but not change it or write its own, nor write in the name of a node that has not sent
// anything yet. Nodes of earlier versions did not sign: what they send waits on them (in
// their bounded queue) until they are upgraded.

import { HttpError } from '../shared/api-router.ts'
import { type NodeSignature, type SignedContent, signingKeyOf } from '../shared/node-signature.ts'
import type { AuthContext } from './api/context.ts'
import { type NodeRecord, UnregisteredHost } from './nodes.ts'

/** The registered host whose content this is, once it is judged the host's own; throws HttpError 400 otherwise. */
export async function judgeRelayed(context: AuthContext, hostId: string, content: SignedContent, signature: NodeSignature | undefined): Promise<NodeRecord> {
  const registered = await context.nodes.lookup(hostId)
  if (!registered) throw new UnregisteredHost(hostId)
  const what = content.kind === 'audit events' ? 'the audit events are' : 'the recording chunk is'
  if (signature === undefined) throw new HttpError(400, `${what} not signed by host ${hostId}: a node signs what proxies carry for it (upgrade it if it is of an earlier version)`)
  // A host registered without its key (none is now: it could not renew either) cannot be told from whoever signed.
  const key = signingKeyOf(hostId, content, signature)
  if (key === undefined || registered.tlsKeySha256 === undefined || key !== registered.tlsKeySha256) {
    throw new HttpError(400, `${what} not signed by the key registered for host ${hostId}`)
  }
  return registered
}
