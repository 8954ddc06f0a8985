// GET /v1/health the way an outsider asks it: no client certificate, the server's certificate
// not checked, a connection of its own unless an agent is given.

import { type Agent, request as httpsRequest } from 'node:https'

/** The answer's status, or the code of the error that ended the request (ECONNRESET for a connection closed unanswered). */
export function healthStatus(host: string, port: number, options: { localAddress?: string; agent?: Agent | false; servername?: string } = {}): Promise<number | string> {
  return new Promise((resolve) => {
    const req = httpsRequest(
      {
        host,
        port,
        path: '/v1/health',
        rejectUnauthorized: false,
        servername: options.servername,
        agent: options.agent ?? false,
        localAddress: options.localAddress,
        timeout: 20_000,
      },
      (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode ?? 0))
      },
    )
    req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })))
    req.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message))
    req.end()
  })
}
