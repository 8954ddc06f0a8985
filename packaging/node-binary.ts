// The base of each executable: the official Node binary for linux-<arch> at exactly the
// version that builds the blob, taken from the npm registry package node-linux-<arch>
// (`npm pack` fetches any platform's package and checks its integrity), then stripped and
// given small-icu's ICU data (icu-data.ts). Kept in a cache directory, so a rebuild needs
// no network.

import { execFileSync } from 'node:child_process'
import { chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readSync, renameSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { trimIcuData } from './icu-data.ts'

export type Arch = 'x64' | 'arm64'

/** What `strip` is called on a host of another architecture, and the Debian package with it. */
const CROSS_STRIP: Record<Arch, { tool: string; debianPackage: string; elfMachine: number }> = {
  x64: { tool: 'x86_64-linux-gnu-strip', debianPackage: 'binutils-x86-64-linux-gnu', elfMachine: 0x3e },
  arm64: { tool: 'aarch64-linux-gnu-strip', debianPackage: 'binutils-aarch64-linux-gnu', elfMachine: 0xb7 },
}

/**
 * The stripped Node binary for `arch` at `version` with small-icu's ICU data, made once in
 * `cacheDir`; `icu` tells what the trimming did when it was made by this call.
 */
export function baseNodeBinary(arch: Arch, version: string, cacheDir: string): { path: string; icu?: { items: number; freed: number } } {
  const base = join(cacheDir, `node-v${version}-linux-${arch}`, 'node-base')
  if (existsSync(base)) return { path: base }
  const stripped = strippedNodeBinary(arch, version, cacheDir)
  const work = mkdtempSync(join(cacheDir, 'icu-'))
  try {
    copyFileSync(stripped, base + '.tmp')
    const icu = trimIcuData(base + '.tmp', work)
    renameSync(base + '.tmp', base)
    return { path: base, icu }
  } finally {
    rmSync(work, { recursive: true, force: true })
    rmSync(base + '.tmp', { force: true })
  }
}

/** A stripped Node binary for `arch` at `version`, fetched once into `cacheDir`. */
function strippedNodeBinary(arch: Arch, version: string, cacheDir: string): string {
  const dir = join(cacheDir, `node-v${version}-linux-${arch}`)
  const stripped = join(dir, 'node-stripped')
  if (existsSync(stripped)) return stripped
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  const tarball = fetchPackage(`node-linux-${arch}@${version}`, dir)
  execFileSync('tar', ['-xzf', tarball, '-C', dir, 'package/bin/node'])
  const binary = join(dir, 'package/bin/node')
  checkElfMachine(binary, arch)
  strip(arch, binary, stripped + '.tmp')
  renameSync(stripped + '.tmp', stripped)
  rmSync(tarball)
  rmSync(join(dir, 'package'), { recursive: true })
  return stripped
}

/** `npm pack SPEC` into `dir`; returns the tarball's path. */
function fetchPackage(spec: string, dir: string): string {
  let output: string
  try {
    output = execFileSync('npm', ['pack', spec, '--json', '--pack-destination', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
  } catch (error) {
    throw new Error(`cannot fetch ${spec} from the npm registry: ${(error as Error).message}`)
  }
  const [packed] = JSON.parse(output) as { filename: string }[]
  return join(dir, packed.filename)
}

function strip(arch: Arch, input: string, output: string): void {
  const native = process.arch === arch
  const tool = native ? 'strip' : CROSS_STRIP[arch].tool
  try {
    execFileSync(tool, ['-o', output, input], { stdio: ['ignore', 'inherit', 'inherit'] })
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
    const debianPackage = native ? 'binutils' : CROSS_STRIP[arch].debianPackage
    throw new Error(`"${tool}" is needed to strip the linux-${arch} Node binary: install the Debian package ${debianPackage} (apt-get install ${debianPackage})`)
  }
  chmodSync(output, statSync(input).mode)
}

/** The ELF header's e_machine: a package that held another architecture's binary is refused. */
function checkElfMachine(binary: string, arch: Arch): void {
  const header = Buffer.alloc(20)
  const fd = openSync(binary, 'r')
  try {
    readSync(fd, header, 0, header.length, 0)
  } finally {
    closeSync(fd)
  }
  const isElf = header.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))
  if (!isElf || header.readUInt16LE(18) !== CROSS_STRIP[arch].elfMachine) throw new Error(`${binary} is not a linux-${arch} ELF executable`)
}
