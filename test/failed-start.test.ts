// An auth server that fails to start ends: what it had opened (its listener, its timers, its
// backend) is closed, and `warren start` exits with a failure status, so that systemd sees a
// failed unit and starts it again, and a second start is not refused as "in use". The failure
// here is the last step of a start, writing warrenctl's admin identity into the data dir: its
// folder is taken by a file, or (as root) the data dir's filesystem is full.

import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { AuthServer } from '../auth/server.ts'
import { parseConfig } from '../shared/config.ts'
import { lockHolder } from '../shared/data-dir-lock.ts'
import { createLogger } from '../shared/log.ts'
import { statusSocketPath } from '../shared/status-socket.ts'
import { AuthProcess, Daemon, freePort, tempDir } from './helpers/cluster.ts'
import { cannotMountTmpfs, fillDisk, mountTmpfs } from './helpers/full-disk.ts'

/** Whether something accepts TCP connections on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

/** How the process ended, or 'still running' if it has not within a generous bound. */
async function ending(daemon: Daemon): Promise<number | null | 'still running'> {
  return Promise.race([daemon.exited, sleep(30_000, 'still running' as const, { ref: false })])
}

function configYaml(dataDir: string, port: number): string {
  return ['version: v1', `data_dir: ${dataDir}`, 'ssh_service: { enabled: false }', 'auth_service:', `  listen_addr: 127.0.0.1:${port}`, '  cluster_name: failed-start'].join('\n')
}

t.test('in process: a failed start closes its listener and its backend', async (t) => {
  const dataDir = tempDir()
  const port = await freePort()
  // The admin identity's folder is a file: the identity cannot be written.
  writeFileSync(join(dataDir, 'admin'), '')
  const auth = new AuthServer(parseConfig(configYaml(dataDir, port), 'failed-start.yaml'), createLogger('auth', { level: 'error' }))
  t.teardown(() => auth.stop())
  await t.rejects(auth.start(), 'the start fails')
  t.notOk(await listening(port), 'nothing listens on its port')
  await t.rejects(auth.backendAnswers(), 'its backend is closed')

  rmSync(join(dataDir, 'admin'))
  const again = new AuthServer(parseConfig(configYaml(dataDir, port), 'failed-start.yaml'), createLogger('auth', { level: 'error' }))
  t.teardown(() => again.stop())
  await again.start()
  t.ok(await listening(port), 'a second start on the same data dir and port serves')
})

t.test('warren start: a failed start exits with a failure status', async (t) => {
  const dataDir = tempDir()
  const port = await freePort()
  writeFileSync(join(dataDir, 'warren.yaml'), configYaml(dataDir, port))
  writeFileSync(join(dataDir, 'admin'), '')
  const daemon = new Daemon(['start', `--config=${join(dataDir, 'warren.yaml')}`])
  t.teardown(() => daemon.stop('SIGKILL'))
  t.equal(await ending(daemon), 1, 'the process exits with status 1')
  t.notOk(existsSync(statusSocketPath(dataDir)), 'its status socket is gone')
  t.notOk(await listening(port), 'nothing listens on its port')

  rmSync(join(dataDir, 'admin'))
  const again = new AuthProcess({ dataDir, port })
  t.teardown(() => again.stop())
  await again.start()
  t.equal(lockHolder(dataDir)?.pid, again.daemon.child.pid, 'a second start takes the data dir')
})

t.test('warren start on a full disk exits, and starts once the disk has room', { skip: cannotMountTmpfs }, async (t) => {
  const mount = mountTmpfs(t, '4m')
  const dataDir = join(mount, 'data')
  mkdirSync(dataDir, { mode: 0o700 })
  const port = await freePort()
  const first = await new AuthProcess({ dataDir, port }).start()
  // Killed, it leaves its SQLite journal, where the next start writes without asking for room.
  await first.stop('SIGKILL')
  // Its admin identity gone, and the disk filled: the start gets as far as writing it again.
  rmSync(first.identityPath)
  fillDisk(t, mount)

  const daemon = new Daemon(['start', `--config=${first.configPath}`])
  t.teardown(() => daemon.stop('SIGKILL'))
  t.equal(await ending(daemon), 1, 'the process exits with status 1')
  t.notOk(await listening(port), 'nothing listens on its port')

  rmSync(join(mount, 'filler'))
  const again = await new AuthProcess({ dataDir, port }).start()
  t.teardown(() => again.stop())
  t.equal(lockHolder(dataDir)?.pid, again.daemon.child.pid, 'the next start runs')
})
