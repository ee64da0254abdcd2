// The published shape: the root package carries JavaScript and types only, the native binary comes from the
// per-platform package. Packs both, installs them offline into an empty project and loads sockmap from there.
import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

import { afterAll, describe, expect, it } from 'vitest'

const root = resolve(__dirname, '..')
const work = mkdtempSync(join(tmpdir(), 'sockmap-pack-'))
const npm = (args: string[], cwd: string): string =>
  execFileSync('npm', args, {
    cwd,
    encoding: 'utf8',
    stdio: 'pipe',
    timeout: 120_000,
  })

afterAll(() => rmSync(work, { recursive: true, force: true }))

describe('the npm packages', () => {
  it('install without Rust and load the binary from the platform package', () => {
    const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version
    const platformSrc = join(root, 'npm', 'linux-x64-gnu')
    const platform = join(work, 'platform')
    execFileSync('cp', ['-r', platformSrc, platform])
    copyFileSync(join(root, 'src', 'sockmap.linux-x64-gnu.node'), join(platform, 'sockmap.linux-x64-gnu.node'))

    const rootFiles = JSON.parse(npm(['pack', '--dry-run', '--json', '--ignore-scripts'], root)) as Array<{
      files: Array<{ path: string }>
    }>
    const paths = rootFiles[0]?.files.map((f) => f.path) ?? []
    expect(paths).toContain('dist/index.js')
    expect(paths).toContain('dist/index.mjs')
    expect(paths).toContain('dist/index.d.ts')
    expect(paths).toContain('dist/binding.cjs')
    expect(paths.filter((p) => p.endsWith('.node'))).toEqual([])

    npm(['pack', '--ignore-scripts', '--pack-destination', work], root)
    npm(['pack', '--pack-destination', work], platform)

    const app = join(work, 'app')
    execFileSync('mkdir', ['-p', app])
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }))
    npm(
      [
        'install',
        '--offline',
        '--no-audit',
        '--no-fund',
        join(work, `sockmap-${version}.tgz`),
        join(work, `sockmap-linux-x64-gnu-${version}.tgz`),
      ],
      app,
    )
    const out = execFileSync(
      process.execPath,
      [
        '-e',
        [
          "const s = require('sockmap')",
          "const r = new s.SgRing(); r.append(Buffer.from('packed'))",
          "console.log(r.toBuffer().toString(), require.resolve('sockmap-linux-x64-gnu'))",
        ].join(';'),
      ],
      { cwd: app, encoding: 'utf8', env: { PATH: '/usr/bin:/bin', NAPI_RS_ENFORCE_VERSION_CHECK: '1' } },
    ).trim()
    expect(out).toBe(`packed ${join(app, 'node_modules', 'sockmap-linux-x64-gnu', 'sockmap.linux-x64-gnu.node')}`)
  }, 180_000)
})
