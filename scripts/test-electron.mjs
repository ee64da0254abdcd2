// Runs the vitest suite against an Electron-like build of the addon: built with the `electron-cage` feature, in which
// every call to napi_create_external_buffer or napi_create_external_arraybuffer fails (Electron's V8 memory cage
// refuses external buffers). A path that would hand JavaScript an external buffer throws there, so the suite passing
// on it shows that none does. Linux only (the build redirects the calls with the GNU linker's --wrap).
//
//   node scripts/test-electron.mjs [VITEST ARGS...]      (npm run test:electron)
import { spawnSync } from 'node:child_process'
import { join, resolve } from 'node:path'

const root = resolve(import.meta.dirname, '..')
const outDir = join('artifacts', 'electron-cage')
const run = (cmd, args, env = process.env) => {
  console.log(`$ ${cmd} ${args.join(' ')}`)
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, env })
  if (r.status !== 0) process.exit(r.status ?? 1)
}

run('npx', [
  'napi',
  'build',
  '--platform',
  '--release',
  '--features',
  'electron-cage',
  '--manifest-path',
  'crates/sockmap-node/Cargo.toml',
  '--package-json-path',
  'package.json',
  '--output-dir',
  outDir,
  '--no-js',
  '--dts',
  'binding.d.cts',
])
const binary = join(root, outDir, `sockmap.linux-${process.arch}-gnu.node`)
run('npx', ['vitest', 'run', ...process.argv.slice(2)], {
  ...process.env,
  SOCKMAP_NATIVE_PATH: binary,
  SOCKMAP_ELECTRON_CAGE: '1',
})
