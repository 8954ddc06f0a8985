// The recording routes: nodes upload their interactive sessions' recordings in chunks
// (straight, or through the proxy holding their tunnel), and `warrenctl recordings` and
// `warren play` read them. Which node a chunk comes from is decided here from the
// certificate that proved it, never from the chunk.

import { HttpError, NO_BODY } from '../../shared/api-router.ts'
import { RECORDING_CHUNK_BODY_BYTES } from '../../shared/protocol/recordings.ts'
import { UnregisteredHost } from '../nodes.ts'
import type { RecordingChunk, RecordingNode } from '../recordings.ts'
import { judgeRelayed } from '../relayed-by-proxy.ts'
import type { AuthContext, AuthRoutes } from './context.ts'

interface ChunkBody {
  session_id: string
  offset: number
  data: string
  end: boolean
}

async function storeChunk(context: AuthContext, body: ChunkBody, hostId: string) {
  await auditedRefusal(context, body, hostId, async () => checkQuota(context, body, hostId))
  const registered = await context.nodes.lookup(hostId)
  if (!registered) throw new UnregisteredHost(hostId)
  const node: RecordingNode = { hostId, nodename: registered.nodename }
  const chunk: RecordingChunk = { sessionId: body.session_id, offset: body.offset, data: Buffer.from(body.data, 'base64'), end: body.end }
  // Nothing is kept when the cluster does not record; the node is told, and stops recording.
  if (context.settings.recording === 'off') return { length: chunk.offset + chunk.data.length, complete: true, recording: 'off' as const }
  const stored = await auditedRefusal(context, body, hostId, () => context.recordings.store(chunk, node, () => sessionOwner(context, hostId, body.session_id)))
  return { ...stored, recording: 'node' as const }
}

/**
 * Runs `attempt` for a chunk of a node proven to have sent it; a refusal that makes the node
 * drop the recording (413: over the node's quota, or too long) is an audit event, so that a
 * session whose recording was lost (a user filling the node's quota, say) is seen as such.
 */
async function auditedRefusal<T>(context: AuthContext, body: ChunkBody, hostId: string, attempt: () => Promise<T>): Promise<T> {
  try {
    return await attempt()
  } catch (error) {
    if (error instanceof HttpError && error.status === 413) {
      await context.audit.recordingRefused(hostId, body.session_id, async () => {
        const registered = await context.nodes.lookup(hostId)
        const owner = await sessionOwner(context, hostId, body.session_id)
        return { node: registered?.nodename, ...owner, reason: error.message }
      })
    }
    throw error
  }
}

/** Why the node's quota refuses the chunk now, if it does (checkQuota's error, not thrown). */
function quotaRefusal(context: AuthContext, body: ChunkBody, hostId: string): HttpError | undefined {
  try {
    checkQuota(context, body, hostId)
    return undefined
  } catch (error) {
    if (error instanceof HttpError) return error
    throw error
  }
}

/** A chunk past its node's quota is refused before any lookup or signature check: refusing costs the least. */
function checkQuota(context: AuthContext, body: ChunkBody, hostId: string): void {
  if (context.settings.recording !== 'off') context.recordings.checkQuota(hostId, body.session_id)
}

/** Who the session was and as which login: its session.start audit event, from the same node (one item, filed with the event). */
async function sessionOwner(context: AuthContext, hostId: string, recordingId: string): Promise<{ user: string | null; login: string | null }> {
  const sessionId = recordingId.split('.')[0] ?? recordingId
  return (await context.audit.log.sessionOwner(hostId, sessionId)) ?? { user: null, login: null }
}

export const recordingRoutes = {
  // A direct node's own recording: the node is the TLS certificate's host.
  'POST /v1/recordings/chunks': {
    access: 'node',
    bodyLimit: RECORDING_CHUNK_BODY_BYTES,
    async handle(call, context) {
      return storeChunk(context, await call.body(), call.peer.subject.commonName)
    },
  },

  // A tunnelled node's chunk, carried by the proxy whose tunnel handshake proved the node's key.
  'POST /v1/proxies/recording-chunks': {
    access: 'proxy',
    bodyLimit: RECORDING_CHUNK_BODY_BYTES + 512,
    async handle(call, context) {
      const body = await call.body()
      // Refused before the costlier check of the node's signature; not a refusal that is
      // audited (413), so that no forged chunk writes in a node's name: storeChunk, after it.
      const early = quotaRefusal(context, body, body.host_id)
      if (early && early.status !== 413) throw early
      await judgeRelayed(context, body.host_id, { kind: 'recording chunk', chunk: body }, body.signature)
      return storeChunk(context, body, body.host_id)
    },
  },

  // With etcd, the auth servers whose recording_dir is not this one's are named: their recordings are not in the list.
  'GET /v1/recordings': {
    access: 'admin',
    bodyLimit: NO_BODY,
    async handle(_call, context) {
      const sharing = context.recordings.sharing
      return { recordings: context.recordings.list(), ...(sharing ? { not_shared_with: sharing.not_shared_with } : {}) }
    },
  },

  // An editor reads a recording through a proxy (warren play), as the admin does directly.
  'GET /v1/recordings/:id': {
    access: 'admin',
    bodyLimit: NO_BODY,
    async handle(call, context) {
      const id = call.params.id
      if (id === undefined) throw new HttpError(400, 'no recording ID')
      try {
        return { session_id: id, cast: context.recordings.read(id) }
      } catch (error) {
        const elsewhere = context.recordings.sharing?.not_shared_with.length ?? 0
        if (!(error instanceof HttpError) || error.status !== 404 || elsewhere === 0) throw error
        throw new HttpError(404, `${error.message} here; ${elsewhere} other live auth server(s) keep recordings in another folder than this one's recording_dir and may hold it`)
      }
    },
  },
} satisfies Partial<AuthRoutes>
