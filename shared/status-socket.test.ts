import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { readStatus, StatusSocket, statusSocketPath } from './status-socket.ts'

function dataDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'warren-status-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

t.test('each connection gets the document as it is at that moment, from a socket only its owner may use', async (t) => {
  const path = statusSocketPath(dataDir(t))
  let held = 1
  const socket = await StatusSocket.listen(path, () => ({ held }))
  t.equal(statSync(path).mode & 0o777, 0o600)
  t.same(await readStatus(path), { held: 1 })
  held = 3
  t.same(await readStatus(path), { held: 3 })
  await socket.close()
  t.notOk(existsSync(path), 'closing removes the socket file')
  await t.rejects(readStatus(path), { message: `cannot read the status socket ${path}: no warren process serves it (is "warren start" running with this data dir?)` })
})

t.test('a socket left by a dead process is replaced; a file that is not a socket is left alone', async (t) => {
  const path = statusSocketPath(dataDir(t))
  // A process killed while it served: the file stays, nobody listens.
  const killed = spawnSync(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`])
  t.equal(killed.signal, 'SIGKILL')
  t.ok(statSync(path).isSocket(), 'its socket file is left behind')
  const second = await StatusSocket.listen(path, () => ({ n: 2 }))
  t.same(await readStatus(path), { n: 2 })
  await second.close()

  writeFileSync(path, 'notes')
  await t.rejects(
    StatusSocket.listen(path, () => ({})),
    { message: /a file that is not a socket has that name/ },
  )
  t.equal(statSync(path).size, 5, 'the file is untouched')
})

t.test('a builder that fails answers with its error; a path too long for a socket is refused', async (t) => {
  const dir = dataDir(t)
  const path = statusSocketPath(dir)
  const socket = await StatusSocket.listen(path, () => {
    throw new Error('not ready')
  })
  t.teardown(() => socket.close())
  t.same(await readStatus(path), { error: 'not ready' })
  await t.rejects(
    StatusSocket.listen(join(dir, 'x'.repeat(120)), () => ({})),
    { message: /at most 107 bytes/ },
  )
})

t.test('serving the socket loads neither the cluster module nor child_process (an idle agent holds neither)', async (t) => {
  const path = statusSocketPath(dataDir(t))
  const script = `
    const { StatusSocket } = await import(${JSON.stringify(new URL('./status-socket.ts', import.meta.url).href)})
    const before = new Set(process.moduleLoadList)
    const socket = await StatusSocket.listen(${JSON.stringify(path)}, () => ({ up: true }))
    console.log(JSON.stringify(process.moduleLoadList.filter((name) => !before.has(name) && /^NativeModule (cluster|child_process|dgram)$/.test(name))))
    await socket.close()`
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })
  t.equal(child.status, 0, child.stderr)
  t.same(JSON.parse(child.stdout), [])
})
