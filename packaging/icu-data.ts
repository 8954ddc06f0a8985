// Node's official binaries carry ICU's full data: every locale's names and formats,
// legacy character-set converters and word-break dictionaries, a large share of the
// executable once gzipped (see bench:footprint). Warren keeps the data of Node's own
// `--with-intl=small-icu` build (Node's tools/icu/icu_small.json): the root and English
// locales, collation, time zones, normalization and what V8 needs for Intl; other locales
// fall back to root and English, as in that build. The data is rewritten in place, the
// freed bytes zeroed: the file keeps its size and layout, and gzip drops the zeros.
//
// ICU's own tools do the trimming (icupkg, genrb: Debian's icu-devtools); they read any
// version of ICU's package format, so the pinned Node's ICU needs no matching ICU here.

import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export const ICU_TOOLS_PACKAGE = 'icu-devtools'

/** Locales kept in each locale tree ('' is the top level); the other trees are emptied. */
const KEPT_LOCALES = ['root', 'en']
const LOCALE_TREES = ['', 'coll/', 'curr/', 'zone/']
const EMPTIED_TREES = ['brkitr/', 'lang/', 'rbnf/', 'region/', 'unit/']
/** Items kept although a rule below would drop them, and items dropped by name. */
const ALWAYS_KEPT = new Set(['pool.res', 'supplementalData.res', 'zoneinfo64.res', 'likelySubtags.res'])
const DROPPED = new Set(['cnvalias.icu', 'postalCodeData.res', 'genderList.res', 'unames.icu'])
/** A top-level .res item that is a locale (af, de_CH, yue_Hant_HK), not supplemental data. */
const LOCALE_NAME = /^(root|[a-z]{2,3}(_[A-Za-z0-9]+)*)$/

/** Where ICU's common data package sits in a binary: its offset and its package name (icudt78l). */
export interface IcuPackage {
  offset: number
  length: number
  name: string
}

/** The ICU common data package ("CmnD") in `binary`; exactly one must be there. */
export function findIcuPackage(binary: Buffer): IcuPackage {
  const found: IcuPackage[] = []
  for (let at = binary.indexOf('CmnD'); at >= 0; at = binary.indexOf('CmnD', at + 1)) {
    // The data header: headerSize (2 bytes), magic 0xda 0x27, then UDataInfo whose dataFormat is at +12.
    const start = at - 12
    if (start < 0 || binary[start + 2] !== 0xda || binary[start + 3] !== 0x27) continue
    found.push(describePackage(binary, start))
  }
  if (found.length !== 1) throw new Error(`expected one ICU data package in the Node binary, found ${found.length}`)
  return found[0]
}

function describePackage(binary: Buffer, start: number): IcuPackage {
  const headerSize = binary.readUInt16LE(start)
  const toc = start + headerSize
  const count = binary.readUInt32LE(toc)
  let last = { name: '', offset: -1 }
  for (let i = 0; i < count; i++) {
    const nameAt = toc + binary.readUInt32LE(toc + 4 + i * 8)
    const offset = toc + binary.readUInt32LE(toc + 8 + i * 8)
    if (offset > last.offset) last = { name: binary.toString('latin1', nameAt, binary.indexOf(0, nameAt)), offset }
  }
  const name = last.name.slice(0, last.name.indexOf('/'))
  return { offset: start, length: last.offset + itemLength(binary, last.offset, last.name) - start, name }
}

/** The length of a resource bundle item: its header, then 4 bytes × indexes[URES_INDEX_BUNDLE_TOP]. */
function itemLength(binary: Buffer, at: number, name: string): number {
  const headerSize = binary.readUInt16LE(at)
  if (binary.toString('latin1', at + 12, at + 16) !== 'ResB') throw new Error(`the ICU data package ends in ${name}, not a resource bundle: its length is unknown`)
  return headerSize + 4 * binary.readUInt32LE(at + headerSize + 4 + 3 * 4)
}

/** The items small-icu leaves out, of the full list `items` (names without the package prefix). */
export function itemsToDrop(items: string[]): Set<string> {
  const dropped = new Set([...DROPPED].filter((item) => items.includes(item)))
  for (const item of items) {
    const slash = item.lastIndexOf('/')
    const tree = item.slice(0, slash + 1)
    const base = item.slice(slash + 1)
    const locale = base.endsWith('.res') ? base.slice(0, -4) : undefined
    if (ALWAYS_KEPT.has(item) || base === 'res_index.res') continue
    if (/\.(cnv|cfu)$/.test(item) || item.startsWith('translit/')) dropped.add(item)
    else if (item.endsWith('.spp') && !KEPT_LOCALES.includes(item.slice(0, -4))) dropped.add(item)
    else if (EMPTIED_TREES.includes(tree)) dropped.add(item)
    else if (LOCALE_TREES.includes(tree) && locale !== undefined && locale !== 'pool' && LOCALE_NAME.test(locale) && !KEPT_LOCALES.includes(locale)) dropped.add(item)
  }
  return dropped
}

/**
 * Rewrites the ICU data in the binary file `binary` as small-icu's set, in place; `workDir`
 * holds the intermediate files. Returns the number of items kept and the bytes freed.
 */
export function trimIcuData(binary: string, workDir: string): { items: number; freed: number } {
  const file = readFileSync(binary)
  const icu = findIcuPackage(file)
  const dat = join(workDir, `${icu.name}.dat`)
  writeFileSync(dat, file.subarray(icu.offset, icu.offset + icu.length))
  const items = listItems(dat)
  const dropped = itemsToDrop(items)
  // An item that refers to a dropped one (a locale whose parent is gone) goes too, as in Node's icutrim.py.
  for (let round = 0; ; round++) {
    writeFileSync(join(workDir, 'dropped.lst'), [...dropped].join('\n') + '\n')
    const failure = icupkg(['-r', join(workDir, 'dropped.lst'), dat], true)
    if (failure === undefined) break
    const dependants = [...failure.matchAll(/^Item (\S+) depends on missing item/gm)].map((match) => match[1].replace(`${icu.name}/`, ''))
    if (dependants.length === 0 || round === 10) throw new Error(`icupkg could not trim the ICU data: ${failure.trim()}`)
    for (const item of dependants) dropped.add(item)
    writeFileSync(dat, file.subarray(icu.offset, icu.offset + icu.length))
  }
  const kept = listItems(dat)
  for (const tree of [...LOCALE_TREES, ...EMPTIED_TREES]) writeLocaleIndex(dat, workDir, tree, kept)
  const trimmed = readFileSync(dat)
  if (trimmed.length > icu.length) throw new Error('the trimmed ICU data is larger than the original')
  trimmed.copy(file, icu.offset)
  file.fill(0, icu.offset + trimmed.length, icu.offset + icu.length)
  writeFileSync(binary, file)
  // The locale indexes replaced items already listed in `kept`.
  return { items: kept.length, freed: icu.length - trimmed.length }
}

/** Each tree's res_index lists its installed locales; ICU offers exactly those to Intl. */
function writeLocaleIndex(dat: string, workDir: string, tree: string, kept: string[]): void {
  const locales = kept
    .filter((item) => item.startsWith(tree) && item.endsWith('.res') && !item.slice(tree.length).includes('/'))
    .map((item) => item.slice(tree.length, -4))
    .filter((locale) => locale !== 'res_index' && locale !== 'pool' && LOCALE_NAME.test(locale) && !ALWAYS_KEPT.has(`${tree}${locale}.res`))
  const dir = join(workDir, 'index', tree)
  mkdirSync(dir, { recursive: true })
  const entries = locales.map((locale) => `    ${locale} {""}\n`).join('')
  writeFileSync(join(dir, 'res_index.txt'), `res_index:table(nofallback) {\n  InstalledLocales {\n${entries}  }\n}\n`)
  run('genrb', ['-q', '-d', dir, '-s', dir, 'res_index.txt'])
  icupkg(['-s', join(workDir, 'index'), '-a', `${tree}res_index.res`, dat])
}

function listItems(dat: string): string[] {
  return run('icupkg', ['-l', dat]).trim().split('\n')
}

/** icupkg `args`; with `tolerant`, a failure returns its message instead of throwing. */
function icupkg(args: string[], tolerant = false): string | undefined {
  try {
    run('icupkg', args)
    return undefined
  } catch (error) {
    if (!tolerant || (error as NodeJS.ErrnoException).code === 'ENOENT' || !(error as { stderr?: Buffer }).stderr) throw error
    return String((error as { stderr: Buffer }).stderr)
  }
}

function run(tool: string, args: string[]): string {
  try {
    return execFileSync(tool, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT')
      throw Object.assign(new Error(`"${tool}" is needed to trim Node's ICU data: install the Debian package ${ICU_TOOLS_PACKAGE} (apt-get install ${ICU_TOOLS_PACKAGE})`), {
        code: 'ENOENT',
      })
    throw error
  }
}
