// The published shape: the root package carries JavaScript and types only, with every per-platform package as an
// optional dependency at its exact version; the native binary comes from the per-platform package. Packs both as
// they are published, installs them offline into an empty project (with the root's dependencies packed from
// node_modules, so nothing is fetched) and loads sockmap from there; installed without the platform package, sockmap
// says which package is missing and how to get it.
import { execFileSync } from 'node:child_process'
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

import { afterAll, describe, expect, it } from 'vitest'

import { isMusl, suffixFor } from '../src/native.cjs'

const root = resolve(__dirname, '..')
const { suffix: hostSuffix, host } = suffixFor(process.platform, process.arch, isMusl)
const suffix = hostSuffix as string
const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version
const work = mkdtempSync(join(tmpdir(), 'sockmap-pack-'))
const npm = (args: string[], cwd: string): string =>
  execFileSync('npm', args, {
    cwd,
    encoding: 'utf8',
    stdio: 'pipe',
    timeout: 120_000,
  })

afterAll(() => rmSync(work, { recursive: true, force: true }))

/** The root's runtime dependencies, packed from node_modules into `work` once: offline installs take them from there. */
let packedDeps: string[] | undefined
function dependencyTarballs(): string[] {
  const { dependencies = {} } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    dependencies?: Record<string, string>
  }
  packedDeps ??= Object.keys(dependencies).map((name) => {
    const out = JSON.parse(
      npm(['pack', '--json', '--ignore-scripts', '--pack-destination', work], join(root, 'node_modules', name)),
    ) as Array<{ filename: string }>
    return join(work, out[0]!.filename)
  })
  return packedDeps
}

/** Installs `tarballs` and the root's dependencies offline into the project at `app`. */
function installOffline(app: string, tarballs: string[]): void {
  npm(['install', '--offline', '--no-audit', '--no-fund', ...tarballs, ...dependencyTarballs()], app)
}

// Windows is left out: the install runs npm through a POSIX PATH with no cargo on it.
describe.skipIf(process.platform === 'win32')('the npm packages', () => {
  it('install without Rust and load the binary from the platform package', () => {
    const platformSrc = join(root, 'npm', suffix)
    const platform = join(work, 'platform')
    execFileSync('cp', ['-r', platformSrc, platform])
    copyFileSync(join(root, 'src', `sockmap.${suffix}.node`), join(platform, `sockmap.${suffix}.node`))

    const rootFiles = JSON.parse(npm(['pack', '--dry-run', '--json', '--ignore-scripts'], root)) as Array<{
      files: Array<{ path: string }>
    }>
    const paths = rootFiles[0]?.files.map((f) => f.path) ?? []
    expect(paths).toContain('dist/index.js')
    expect(paths).toContain('dist/index.mjs')
    expect(paths).toContain('dist/index.d.ts')
    expect(paths).toContain('dist/binding.cjs')
    expect(paths.filter((p) => p.endsWith('.node'))).toEqual([])

    // The root as `napi prepublish` leaves it for `npm publish`: package.json with the optional dependencies.
    const staged = join(work, 'root')
    mkdirSync(staged)
    cpSync(join(root, 'dist'), join(staged, 'dist'), { recursive: true })
    copyFileSync(join(root, 'README.md'), join(staged, 'README.md'))
    execFileSync(process.execPath, [join(root, 'scripts', 'release-manifest.mjs'), staged])
    const published = JSON.parse(readFileSync(join(staged, 'package.json'), 'utf8')) as {
      optionalDependencies: Record<string, string>
    }
    expect(published.optionalDependencies[`sockmap-${suffix}`]).toBe(version)
    expect(Object.keys(published.optionalDependencies)).toHaveLength(8)
    npm(['pack', '--ignore-scripts', '--pack-destination', work], staged)
    npm(['pack', '--pack-destination', work], platform)

    const app = join(work, 'app')
    execFileSync('mkdir', ['-p', app])
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }))
    installOffline(app, [join(work, `sockmap-${version}.tgz`), join(work, `sockmap-${suffix}-${version}.tgz`)])
    const out = execFileSync(
      process.execPath,
      [
        '-e',
        [
          "const s = require('sockmap')",
          "const r = new s.SgRing(); r.append(Buffer.from('packed'))",
          `console.log(r.toBuffer().toString(), require.resolve('sockmap-${suffix}'))`,
        ].join(';'),
      ],
      { cwd: app, encoding: 'utf8', env: { PATH: '/usr/bin:/bin', NAPI_RS_ENFORCE_VERSION_CHECK: '1' } },
    ).trim()
    expect(out).toBe(`packed ${join(app, 'node_modules', `sockmap-${suffix}`, `sockmap.${suffix}.node`)}`)
  }, 180_000)

  it('without the platform package, fails to load with the package name and the fix', () => {
    const app = join(work, 'bare')
    mkdirSync(app)
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'bare', version: '1.0.0', private: true }))
    // Offline, npm cannot fetch the platform package: it skips the optional dependency, as --omit=optional would.
    installOffline(app, [join(work, `sockmap-${version}.tgz`)])
    const out = execFileSync(
      process.execPath,
      ['-e', "try { require('sockmap'); console.log('loaded') } catch (e) { console.log(e.code + ': ' + e.message) }"],
      { cwd: app, encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } },
    ).trim()
    expect(out).toBe(
      `ERR_SOCKMAP_NATIVE_MISSING: sockmap: no native binary for ${host}: the package sockmap-${suffix} ` +
        'is not installed. npm installs it with sockmap as an optional dependency that matches the platform; it is ' +
        'missing when optional dependencies were omitted (--omit=optional), when the lockfile or node_modules came ' +
        'from another platform, or when the app was packaged for another platform or CPU. Install it: npm install ' +
        `sockmap-${suffix}@${version} (or delete node_modules and package-lock.json and run npm install again; ` +
        'to package for another platform, install with --os and --cpu set to it).',
    )
  }, 180_000)
})
