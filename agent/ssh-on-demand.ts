// The node's SSH server, loaded at the first SSH connection: its module, ssh2 (a compressed
// part of the single executable) and child_process stay out of an agent that nobody logs
// in to, which saves a fair share of its memory budget (see bench:footprint).

import type { Duplex } from 'node:stream'
import type { Logger } from '../shared/log.ts'
import type { NodeSshServer, SshServerOptions, StreamInfo } from './ssh-server.ts'

/** What the server is made with, besides the user CAs (which change with rotations). */
type ServerSettings = Pick<
  SshServerOptions,
  | 'hostKeyPem'
  | 'log'
  | 'forwardRefusal'
  | 'labels'
  | 'declaredPortName'
  | 'sftpServer'
  | 'onFileOperation'
  | 'remoteForwardRefusal'
  | 'audit'
  | 'recordingDir'
  | 'recorded'
  | 'limits'
  | 'loginRecords'
>

export class SshOnDemand {
  private server?: Promise<NodeSshServer>
  private userCAKeys: string[]
  private readonly settings: ServerSettings & { log: Logger }

  constructor(options: ServerSettings & { userCAKeys: string[]; log: Logger }) {
    const { userCAKeys, ...settings } = options
    this.userCAKeys = userCAKeys
    this.settings = settings
  }

  /** Serves one SSH connection, starting the server first if this is the first one. */
  handleConnection(stream: Duplex, info?: StreamInfo): void {
    this.server ??= import('./ssh-server.ts').then(({ NodeSshServer }) => new NodeSshServer({ ...this.settings, userCAKeys: this.userCAKeys }))
    this.server.then(
      (server) => server.handleConnection(stream, info),
      (error: Error) => {
        this.settings.log.error('the SSH server cannot start', { error })
        stream.destroy()
      },
    )
  }

  /** Replaces the trusted user CAs, for the server running now or the one started later. */
  setUserCAKeys(keys: string[]): void {
    this.userCAKeys = keys
    this.server?.then(
      (server) => server.setUserCAKeys(keys),
      () => {},
    )
  }

  /** Ends every SSH connection, if any was ever served. */
  async close(): Promise<void> {
    const server = await this.server?.catch(() => undefined)
    await server?.close()
  }
}
