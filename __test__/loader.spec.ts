// The native loader's choices, on made-up hosts: which package each platform gets, and the errors when there is
// none, when it was not installed, when its version differs, or when it fails to load. Also that the loader's table,
// the release targets and the per-platform packages under npm/ name the same platforms.
import { readFileSync, readdirSync } from 'node:fs'
import { join, resolve } from 'node:path'

import { describe, expect, it } from 'vitest'

import { ALL_SUFFIXES, loadNative, suffixFor, type Host } from '../src/native.cjs'
import { TARGETS } from '../scripts/targets.mjs'
import { releaseManifest } from '../scripts/release-manifest.mjs'

const root = resolve(__dirname, '..')
const rootPkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }

class NotFound extends Error {
  code = 'MODULE_NOT_FOUND'
}

/** A host whose `require` finds only the modules in `modules`. */
function host(over: Partial<Host>, modules: Record<string, unknown> = {}): Host & { required: string[] } {
  const required: string[] = []
  return {
    platform: 'linux',
    arch: 'x64',
    musl: () => false,
    dir: '/app/node_modules/sockmap/dist',
    version: '1.2.3',
    env: {},
    exists: () => false,
    ...over,
    required,
    require: (id: string) => {
      required.push(id)
      if (id in modules) return modules[id]
      throw new NotFound(`Cannot find module '${id}'\nRequire stack:\n- /app/node_modules/sockmap/dist/native.cjs`)
    },
  }
}

function thrown(f: () => unknown): Error & { code?: string; cause?: unknown } {
  try {
    f()
  } catch (e) {
    return e as Error & { code?: string }
  }
  throw new Error('expected a throw')
}

describe('the native loader', () => {
  it('maps each platform, CPU and C library to its package', () => {
    expect(suffixFor('linux', 'x64', () => false)).toEqual({ suffix: 'linux-x64-gnu', host: 'linux-x64 (glibc)' })
    expect(suffixFor('linux', 'x64', () => true)).toEqual({ suffix: 'linux-x64-musl', host: 'linux-x64 (musl)' })
    expect(suffixFor('linux', 'arm64', () => false).suffix).toBe('linux-arm64-gnu')
    expect(suffixFor('linux', 'arm64', () => true).suffix).toBe('linux-arm64-musl')
    expect(suffixFor('darwin', 'arm64', () => true)).toEqual({ suffix: 'darwin-arm64', host: 'darwin-arm64' })
    expect(suffixFor('darwin', 'x64', () => true).suffix).toBe('darwin-x64')
    expect(suffixFor('win32', 'x64', () => true).suffix).toBe('win32-x64-msvc')
    expect(suffixFor('win32', 'arm64', () => true).suffix).toBe('win32-arm64-msvc')
    expect(suffixFor('freebsd', 'x64', () => false)).toEqual({ suffix: undefined, host: 'freebsd-x64' })
    expect(suffixFor('linux', 'arm', () => false)).toEqual({ suffix: undefined, host: 'linux-arm' })
  })

  it('loads the platform package, after checking its version', () => {
    const binding = { engineVersion: () => '1.2.3' }
    const h = host(
      { musl: () => true },
      {
        'sockmap-linux-x64-musl': binding,
        'sockmap-linux-x64-musl/package.json': { version: '1.2.3' },
      },
    )
    expect(loadNative(h)).toBe(binding)
    expect(h.required).toEqual(['sockmap-linux-x64-musl', 'sockmap-linux-x64-musl/package.json'])
  })

  it('prefers a local build next to the loader, and SOCKMAP_NATIVE_PATH over both', () => {
    const local = '/app/node_modules/sockmap/dist/sockmap.darwin-arm64.node'
    const h = host(
      { platform: 'darwin', arch: 'arm64', exists: (p) => p === local },
      { [local]: 'local', '/opt/own.node': 'own' },
    )
    expect(loadNative(h)).toBe('local')
    expect(loadNative({ ...h, env: { SOCKMAP_NATIVE_PATH: '/opt/own.node' } })).toBe('own')
  })

  it('names the platform, the package and the fix when the platform package is not installed', () => {
    const e = thrown(() => loadNative(host({ arch: 'arm64', musl: () => true })))
    expect(e.code).toBe('ERR_SOCKMAP_NATIVE_MISSING')
    expect(e.message).toContain('no native binary for linux-arm64 (musl)')
    expect(e.message).toContain('the package sockmap-linux-arm64-musl is not installed')
    expect(e.message).toContain('--omit=optional')
    expect(e.message).toContain('npm install sockmap-linux-arm64-musl@1.2.3')
    expect((e.cause as { code?: string }).code).toBe('MODULE_NOT_FOUND')
  })

  it('names the platform and what to do on a platform without a prebuilt binary', () => {
    const h = host({ platform: 'freebsd', arch: 'x64' })
    const e = thrown(() => loadNative(h))
    expect(e.code).toBe('ERR_SOCKMAP_UNSUPPORTED_PLATFORM')
    expect(e.message).toContain('no prebuilt native binary for freebsd-x64')
    expect(e.message).toContain(ALL_SUFFIXES.join(', '))
    expect(e.message).toContain('SOCKMAP_NATIVE_PATH')
    expect(h.required).toEqual([])
  })

  it('refuses a platform package of another version', () => {
    const h = host(
      { platform: 'win32' },
      { 'sockmap-win32-x64-msvc': {}, 'sockmap-win32-x64-msvc/package.json': { version: '1.2.2' } },
    )
    const e = thrown(() => loadNative(h))
    expect(e.code).toBe('ERR_SOCKMAP_NATIVE_VERSION')
    expect(e.message).toBe(
      'sockmap 1.2.3 needs sockmap-win32-x64-msvc@1.2.3, but sockmap-win32-x64-msvc@1.2.2 is installed: npm install sockmap-win32-x64-msvc@1.2.3',
    )
  })

  it('reports a binary that is there but fails to load, with the cause', () => {
    const broken = new Error('/app/node_modules/sockmap-linux-x64-gnu/sockmap.linux-x64-gnu.node: invalid ELF header')
    const h = host({})
    h.require = () => {
      throw broken
    }
    const e = thrown(() => loadNative(h))
    expect(e.code).toBe('ERR_SOCKMAP_NATIVE_LOAD')
    expect(e.message).toContain('the native binary of sockmap-linux-x64-gnu (linux-x64 (glibc)) failed to load')
    expect(e.cause).toBe(broken)
  })

  it('knows the same platforms as the release targets and the packages under npm/', () => {
    const sorted = (a: readonly string[]) => [...a].sort()
    expect(sorted(ALL_SUFFIXES)).toEqual(sorted(TARGETS.map((t) => t.suffix)))
    expect(sorted(readdirSync(join(root, 'npm')))).toEqual(sorted(ALL_SUFFIXES))
  })

  it('has one package per target under npm/ with os, cpu and libc set, at the root version', () => {
    for (const suffix of ALL_SUFFIXES) {
      const pkg = JSON.parse(readFileSync(join(root, 'npm', suffix, 'package.json'), 'utf8')) as Record<string, unknown>
      const [platform, arch, abi] = suffix.split('-')
      expect(pkg.name).toBe(`sockmap-${suffix}`)
      expect(pkg.version).toBe(rootPkg.version)
      expect(pkg.os).toEqual([platform])
      expect(pkg.cpu).toEqual([arch])
      expect(pkg.main).toBe(`sockmap.${suffix}.node`)
      expect(pkg.files).toEqual([`sockmap.${suffix}.node`])
      if (platform === 'linux') expect(pkg.libc).toEqual([abi === 'musl' ? 'musl' : 'glibc'])
      else expect(pkg.libc).toBeUndefined()
    }
  })

  it('publishes the root with every platform package as an optional dependency at its exact version', () => {
    const manifest = releaseManifest() as { optionalDependencies: Record<string, string> }
    expect(manifest.optionalDependencies).toEqual(
      Object.fromEntries(ALL_SUFFIXES.map((s) => [`sockmap-${s}`, rootPkg.version])),
    )
  })
})
