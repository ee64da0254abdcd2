// What each release binary links against, read off the file: the right machine, the right C library (musl's, or
// glibc no newer than the floor), stripped, and no import of the external-buffer functions (Electron's memory cage
// forbids external buffers; a binary that does not import them cannot create one). `npm run build:all` puts the
// cross-built binaries into artifacts/; a target not built there is skipped. The host binary (src/, what
// `npm run build` makes) is always checked.
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'

import { describe, expect, it } from 'vitest'

import { GLIBC_FLOOR, TARGETS, binaryName, type Target } from '../scripts/targets.mjs'
import { isMusl, suffixFor } from '../src/native.cjs'

const root = resolve(__dirname, '..')
const tool = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 })
const FORBIDDEN = ['napi_create_external_buffer', 'napi_create_external_arraybuffer']

/** The symbols a shared object imports (undefined in its dynamic symbol table), without version suffixes. */
export function imports(file: string): string[] {
  return tool('readelf', ['--dyn-syms', '--wide', file])
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f.length >= 8 && f[6] === 'UND' && f[7] !== undefined)
    .map((f) => (f[7] as string).replace(/@.*$/, ''))
}

/** The glibc symbol versions a shared object needs (its `.gnu.version_r` entries). */
function glibcVersions(file: string): string[] {
  return [...tool('readelf', ['--version-info', '--wide', file]).matchAll(/Name: GLIBC_([0-9.]+)/g)].map(
    (m) => m[1] as string,
  )
}

const newer = (a: string, b: string): boolean => {
  const [x, y] = [a.split('.').map(Number), b.split('.').map(Number)]
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) > (y[i] ?? 0)
  }
  return false
}

function checkElf(file: string, t: Target, glibcFloor: string): void {
  const elf = t.elf
  if (!elf) throw new Error(`${t.suffix} is not an ELF target`)
  const out = tool('file', ['--brief', file])
  expect(out.startsWith(t.file)).toBe(true)
  expect(out).toMatch(/, stripped$/m)
  expect(tool('readelf', ['--file-header', file])).toMatch(new RegExp(`Machine:\\s+${elf.machine}\\n`))
  const sections = tool('readelf', ['--section-headers', '--wide', file])
  expect(sections).not.toMatch(/\s\.symtab\s/)
  expect(sections).not.toMatch(/\s\.debug_/)

  const needed = [...tool('readelf', ['--dynamic', file]).matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map(
    (m) => m[1],
  )
  const versions = glibcVersions(file)
  if (elf.libc === 'musl') {
    // musl's libc.so is its dynamic loader; nothing of glibc's may be linked.
    expect(needed).toContain('libc.so')
    expect(needed).not.toContain('libc.so.6')
    expect(versions).toEqual([])
  } else {
    expect(needed).toContain('libc.so.6')
    expect(versions.length).toBeGreaterThan(0)
    expect(versions.filter((v) => newer(v, glibcFloor))).toEqual([])
  }

  const imported = imports(file)
  expect(imported).toContain('napi_create_buffer')
  expect(imported.filter((s) => FORBIDDEN.includes(s))).toEqual([])
}

describe('the release binaries (artifacts/)', () => {
  for (const t of TARGETS) {
    const file = join(root, 'artifacts', binaryName(t))
    it.skipIf(!existsSync(file))(`${binaryName(t)} is a ${t.file}${t.elf ? ` for ${t.elf.libc}` : ''}`, () => {
      if (t.elf) checkElf(file, t, GLIBC_FLOOR)
      else expect(tool('file', ['--brief', file]).startsWith(t.file)).toBe(true)
    })
  }
})

const hostTarget = TARGETS.find((t) => t.suffix === suffixFor(process.platform, process.arch, isMusl).suffix)

describe.skipIf(!hostTarget?.elf)('the host binary (src/)', () => {
  const host = hostTarget as Target
  const file = join(root, 'src', binaryName(host))

  it('exists: npm run build made it', () => {
    expect(existsSync(file)).toBe(true)
  })

  it(`is a stripped ${hostTarget?.file} object that imports no external-buffer function`, () => {
    // Built with the host's toolchain, so its glibc floor is the host's own (the release binary is built against 2.17).
    const report = process.report.getReport() as { header?: { glibcVersionRuntime?: string } }
    checkElf(file, host, report.header?.glibcVersionRuntime ?? GLIBC_FLOOR)
  })

  it('reads imports the way the checks above rely on', () => {
    // The checks would pass vacuously if the import list came back empty or cut: it must hold the Node-API calls the
    // binding makes, and the forbidden names must be the ones Node itself exports.
    expect(imports(file)).toEqual(
      expect.arrayContaining(['napi_create_buffer', 'napi_create_function', 'napi_throw_error']),
    )
    const exported = tool('readelf', ['--dyn-syms', '--wide', process.execPath])
    for (const name of FORBIDDEN) expect(exported).toMatch(new RegExp(`\\sFUNC\\s.*\\s${name}$`, 'm'))
  })
})
