// Child process for the crash test in sqlite.test.ts: writes keys until it is killed and
// prints "<key> <value>" for each one only after put() resolved, i.e. once it is durable.
import { SqliteBackend } from './sqlite.ts'

const path = process.argv[2]
if (path === undefined) throw new Error('usage: sqlite-crash-writer.fixture.ts <database path>')

const backend = SqliteBackend.open(path)
for (let i = 0; ; i++) {
  const key = `/crash/${i}`
  await backend.put(key, `value-${i}`)
  process.stdout.write(`${key} value-${i}\n`)
}
