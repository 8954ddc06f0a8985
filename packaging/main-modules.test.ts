import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { build } from 'esbuild'
import t from 'tap'
import { fromMainScript, mainModuleTable } from './main-modules.ts'

const require = createRequire(import.meta.url)

/** Runs the CommonJS `source` as the single executable runs a script; returns its exports. */
function run(source: string): Record<string, unknown> {
  const module = { exports: {} as Record<string, unknown> }
  new Function('exports', 'require', 'module', source)(module.exports, require, module)
  return module.exports
}

t.test("a part beside the main script uses the main script's modules: its classes and its state", async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'warren-main-modules-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  writeFileSync(join(root, 'errors.ts'), 'export class Refused extends Error {}\nexport const counts = { refused: 0 }\n')
  writeFileSync(join(root, 'only-part.ts'), 'export const reason = "only the part has this"\n')
  writeFileSync(
    join(root, 'part.ts'),
    'import { Refused, counts } from "./errors.ts"\nimport { reason } from "./only-part.ts"\nexport function refuse() { counts.refused++; throw new Refused(reason) }\n',
  )
  writeFileSync(join(root, 'main.ts'), 'import { Refused, counts } from "./errors.ts"\nexport { Refused, counts }\n')
  const common = { absWorkingDir: root, bundle: true, platform: 'node' as const, format: 'cjs' as const, write: false, logLevel: 'silent' as const }

  const first = await build({ ...common, entryPoints: ['main.ts'], metafile: true })
  const taken = new Set<string>()
  const part = await build({ ...common, entryPoints: ['part.ts'], plugins: [fromMainScript(root, new Set(Object.keys(first.metafile.inputs)), taken)] })
  t.same([...taken], ['errors.ts'], 'the part takes the module the main script holds')
  const partSource = part.outputFiles![0].text
  t.notMatch(partSource, /class Refused/, 'and carries no copy of it')
  t.match(partSource, /only the part has this/, 'but carries what only it uses')

  const table = mainModuleTable(root, taken, {})
  const main = await build({ ...common, stdin: { contents: `${table}\nmodule.exports = require(${JSON.stringify(join(root, 'main.ts'))})`, resolveDir: root, loader: 'js' } })
  const { Refused, counts } = run(main.outputFiles![0].text) as { Refused: typeof Error; counts: { refused: number } }
  const { refuse } = run(partSource) as { refuse: () => never }
  const thrown = (() => {
    try {
      refuse()
    } catch (error) {
      return error
    }
  })()
  t.ok(thrown instanceof Refused, "the part's error is the main script's class")
  t.equal(counts.refused, 1, "and its count is the main script's")
})
