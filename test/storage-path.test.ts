// auth_service.storage.path, the SQLite file that holds the CAs' private keys, is judged as
// the data dir is: in a folder others may write into (a sticky one such as /tmp included,
// where another user can make the file ready before the first start and read the keys
// after), the auth server refuses to start and writes nothing there. A relative path, which
// would name another database (another cluster) from each working directory, is a config error.

import { execFile } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { ROOT, tempDir } from './helpers/cluster.ts'

/**
 * Runs `warren start` from `cwd` until it exits, or until it serves (its admin identity
 * written), which these tests count as a failure to refuse: then it is stopped.
 */
function start(config: string, dataDir: string, cwd: string): Promise<number | 'serving'> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [join(ROOT, 'cli/warren.ts'), 'start', '--roles=auth', `--config=${config}`], { cwd })
    let serving = false
    const watch = async () => {
      while (child.exitCode === null && child.signalCode === null) {
        if (existsSync(join(dataDir, 'admin', 'identity.json'))) {
          serving = true
          child.kill('SIGKILL')
          return
        }
        await sleep(50)
      }
    }
    child.once('exit', (code) => resolve(serving ? 'serving' : (code ?? -1)))
    void watch()
  })
}

function config(dir: string, dataDir: string, path: string): string {
  const file = join(dir, 'warren.yaml')
  writeFileSync(
    file,
    ['version: v1', `data_dir: ${dataDir}`, 'ssh_service: { enabled: false }', 'auth_service:', '  listen_addr: 127.0.0.1:0', `  storage: { type: sqlite, path: ${path} }`].join(
      '\n',
    ),
  )
  return file
}

t.test('a storage path in a folder others may write into is refused', async (t) => {
  const dir = tempDir()
  const shared = join(dir, 'shared')
  mkdirSync(shared)
  chmodSync(shared, 0o1777)
  const dataDir = join(dir, 'data')
  t.equal(await start(config(dir, dataDir, join(shared, 'backend.db')), dataDir, dir), 1, 'warren start exits with status 1')
  t.same(readdirSync(shared), [], 'nothing is written into the folder')
  t.equal(statSync(shared).mode & 0o7777, 0o1777, 'whose mode is left as it was')
})

t.test('a relative storage path is a config error', async (t) => {
  const dir = tempDir()
  const cwd = join(dir, 'cwd')
  mkdirSync(cwd)
  const dataDir = join(dir, 'data')
  t.equal(await start(config(dir, dataDir, 'backend.db'), dataDir, cwd), 1, 'warren start exits with status 1')
  t.same(readdirSync(cwd), [], 'no database in the working directory')
  t.notOk(existsSync(dataDir), 'nor a data dir')
})

t.test('a storage path of its own, in a private folder, serves', async (t) => {
  const dir = tempDir()
  const own = join(dir, 'db')
  const dataDir = join(dir, 'data')
  t.equal(await start(config(dir, dataDir, join(own, 'backend.db')), dataDir, dir), 'serving')
  t.equal(statSync(join(own, 'backend.db')).mode & 0o777, 0o600, 'the database is private')
})
