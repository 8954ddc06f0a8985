// A secret written atomically is written whole or not at all, even where a write takes only
// part of its bytes (a file size limit; a disk nearly full).

import t from 'tap'
import { repoModule, underFileSizeLimit } from '../test/helpers/file-size-limit.ts'

t.test('a write cut short fails, and the file keeps what it held', async (t) => {
  const result = underFileSizeLimit<{ error: string | null; length: number }>(
    1,
    `import { readFileSync } from 'node:fs'
import { writeFileAtomic } from ${repoModule('shared/files.ts')}
writeFileAtomic('identity.json', 'the old identity')
let error = null
try {
  writeFileAtomic('identity.json', 'x'.repeat(3000))
} catch (e) {
  error = e.code
}
process.stdout.write(JSON.stringify({ error, length: readFileSync('identity.json').length }))
`,
  )
  t.equal(result.error, 'EFBIG', 'the write fails')
  t.equal(result.length, 'the old identity'.length, 'the old file stays, whole')
})
