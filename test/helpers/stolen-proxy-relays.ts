// Relays of an attacker who holds a proxy's keys (its data dir stolen) and stands where the
// proxy stands: each ends the client's TLS with the stolen certificate (a proxy certificate
// of the cluster's CA, which clients accept) and passes the requests on to the real proxy.
// One records every byte both ways in the clear; the other rewrites request bodies.

import { once } from 'node:events'
import { createServer as createHttpsServer, request } from 'node:https'
import { connect, createServer, type TLSSocket } from 'node:tls'
import type { Test } from 'tap'
import type { NodeIdentity } from '../../shared/identity-store.ts'

/** A relay that keeps in `recorded` what passes, both ways, decrypted. */
export async function recordingRelay(t: Test, stolen: NodeIdentity, upstreamWeb: string): Promise<{ address: string; recorded: Buffer[] }> {
  const recorded: Buffer[] = []
  const [host, port] = upstreamWeb.split(':')
  const relay = createServer({ cert: stolen.tlsCertPem, key: stolen.tlsKeyPem }, (client: TLSSocket) => {
    const upstream = connect({ host, port: Number(port), rejectUnauthorized: false, servername: 'warren-cluster' })
    client.on('data', (chunk: Buffer) => {
      recorded.push(chunk)
      upstream.write(chunk)
    })
    upstream.on('data', (chunk: Buffer) => {
      recorded.push(chunk)
      client.write(chunk)
    })
    const close = () => {
      client.destroy()
      upstream.destroy()
    }
    client.on('error', close).on('close', close)
    upstream.on('error', close).on('close', close)
  })
  relay.listen(0, '127.0.0.1')
  await once(relay, 'listening')
  t.teardown(() => relay.close())
  return { address: `127.0.0.1:${(relay.address() as { port: number }).port}`, recorded }
}

/** Rewrites the JSON body of the requests to `route` ("POST /v1/login"); undefined leaves it. */
export type Rewrite = (route: string, body: Record<string, unknown>) => Record<string, unknown> | undefined

/** A relay that passes requests on with their bodies rewritten, and notes the status of each rewritten one. */
export async function rewritingRelay(
  t: Test,
  stolen: NodeIdentity,
  upstreamWeb: string,
  rewrite: Rewrite,
): Promise<{ address: string; answers: { route: string; status: number }[] }> {
  const answers: { route: string; status: number }[] = []
  const [host, port] = upstreamWeb.split(':')
  const server = createHttpsServer({ cert: stolen.tlsCertPem, key: stolen.tlsKeyPem }, async (req, res) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    let body = Buffer.concat(chunks)
    const route = `${req.method} ${req.url}`
    const rewritten = body.length > 0 ? rewrite(route, JSON.parse(body.toString())) : undefined
    if (rewritten) body = Buffer.from(JSON.stringify(rewritten))
    const headers = { ...req.headers, 'content-length': String(body.length) }
    const upstream = request({ host, port: Number(port), method: req.method, path: req.url, headers, rejectUnauthorized: false, servername: 'warren-cluster' }, async (answer) => {
      const out: Buffer[] = []
      for await (const chunk of answer) out.push(chunk as Buffer)
      if (rewritten) answers.push({ route, status: answer.statusCode! })
      res.writeHead(answer.statusCode!, answer.headers)
      res.end(Buffer.concat(out))
    })
    upstream.on('error', () => res.destroy())
    upstream.end(body)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  return { address: `127.0.0.1:${(server.address() as { port: number }).port}`, answers }
}
