// The executables' ICU data is small-icu's: these tests trim a copy of the Node that runs
// them, then compare what it answers with what the full data answers.

import { execFileSync, spawnSync } from 'node:child_process'
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { findIcuPackage, itemsToDrop, trimIcuData } from './icu-data.ts'

const toolsMissing = ['icupkg', 'genrb'].find((tool) => spawnSync(tool, ['--help'], { stdio: 'ignore' }).error)

t.test('which items go', async (t) => {
  const items = [
    'root.res',
    'en.res',
    'de.res',
    'de_CH.res',
    'pool.res',
    'res_index.res',
    'supplementalData.res',
    'zoneinfo64.res',
    'metaZones.res',
    'plurals.res',
    'coll/root.res',
    'coll/en.res',
    'coll/de.res',
    'coll/ucadata.icu',
    'coll/res_index.res',
    'zone/en.res',
    'zone/fr.res',
    'zone/tzdbNames.res',
    'curr/supplementalData.res',
    'lang/en.res',
    'region/root.res',
    'brkitr/root.res',
    'brkitr/word.brk',
    'brkitr/cjdict.dict',
    'brkitr/res_index.res',
    'translit/root.res',
    'ibm-1047_P100-1995.cnv',
    'cnvalias.icu',
    'unames.icu',
    'confusables.cfu',
    'rfc3491.spp',
    'nfkc.nrm',
    'uts46.nrm',
    'uemoji.icu',
  ]
  const dropped = itemsToDrop(items)
  const kept = items.filter((item) => !dropped.has(item))
  t.strictSame(kept, [
    'root.res',
    'en.res',
    'pool.res',
    'res_index.res',
    'supplementalData.res',
    'zoneinfo64.res',
    'metaZones.res',
    'plurals.res',
    'coll/root.res',
    'coll/en.res',
    'coll/ucadata.icu',
    'coll/res_index.res',
    'zone/en.res',
    'zone/tzdbNames.res',
    'curr/supplementalData.res',
    'brkitr/res_index.res',
    'nfkc.nrm',
    'uts46.nrm',
    'uemoji.icu',
  ])
})

t.test('a binary without ICU data is refused', async (t) => {
  t.throws(() => findIcuPackage(Buffer.from('no data here CmnD at all')), /expected one ICU data package in the Node binary, found 0/)
})

t.test('a trimmed Node answers in English as the full one does', { skip: toolsMissing && `${toolsMissing} is missing (Debian icu-devtools)` }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'warren-icu-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const trimmedNode = join(dir, 'node')
  copyFileSync(process.execPath, trimmedNode)
  const before = findIcuPackage(readFileSync(trimmedNode))
  const { items, freed } = trimIcuData(trimmedNode, dir)
  t.equal(statSync(trimmedNode).size, statSync(process.execPath).size, 'the binary keeps its size and layout')
  t.ok(freed > before.length / 2, `most of the ${before.length} bytes of ICU data are freed (${freed})`)
  t.ok(items < 100, `${items} items are left`)

  // Everything a Warren process formats, sorts or normalizes, in English and root.
  const english = `JSON.stringify([
    new Date(9e8).toString(), new Date(9e8).toLocaleString('en-US', { timeZone: 'UTC' }),
    new Intl.DateTimeFormat('en', { dateStyle: 'full', timeStyle: 'long', timeZone: 'America/New_York' }).format(9e8),
    (1234567.891).toLocaleString(), new Intl.NumberFormat('en', { style: 'currency', currency: 'EUR' }).format(3),
    new Intl.RelativeTimeFormat('en').format(-3, 'day'), new Intl.PluralRules('en').select(1), new Intl.ListFormat('en').format(['a', 'b', 'c']),
    ['node-b', 'Node-a', 'node-é', 'node-10', 'node-9'].sort((a, b) => a.localeCompare(b)),
    'Å'.normalize('NFD').length, 'ﬁ'.normalize('NFKC'), 'İSTANBUL'.toLocaleLowerCase('en'), new URL('http://bücher.example/').hostname,
  ])`
  const run = (node: string, script: string) => execFileSync(node, ['-p', script], { encoding: 'utf8', env: { ...process.env, TZ: 'Europe/Berlin' } })
  t.equal(run(trimmedNode, english), run(process.execPath, english))

  const offered = "JSON.stringify(Intl.DateTimeFormat.supportedLocalesOf(['de', 'ja', 'en', 'en-GB']))"
  t.equal(run(trimmedNode, offered).trim(), '["en","en-GB"]', 'only English is offered')
  t.equal(run(process.execPath, offered).trim(), '["de","ja","en","en-GB"]', 'the full data offers every locale')
})
