// Builds the release binary of every target this Linux x64 machine can build into artifacts/ (or of the targets
// named on the command line, by triple or package suffix), and says which it cannot build and why.
//
//   node scripts/build-all.mjs [TARGET...]
//
// gnu targets link with napi-rs's cross toolchain (gcc against glibc 2.17, from npm); musl and macOS targets link
// with zig through cargo-zigbuild (both from PyPI: `pip install ziglang cargo-zigbuild`). Each target needs its
// Rust standard library (`rustup target add TRIPLE`). Exits non-zero if a target that should build here fails.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { homedir, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

import { TARGETS, binaryName } from './targets.mjs'

const root = resolve(import.meta.dirname, '..')
const out = join(root, 'artifacts')
const require = createRequire(join(root, 'package.json'))

const wanted = process.argv.slice(2)
const selected = wanted.length
  ? wanted.map((w) => {
      const t = TARGETS.find((t) => t.triple === w || t.suffix === w)
      if (!t) throw new Error(`unknown target ${w}; known: ${TARGETS.map((t) => t.suffix).join(', ')}`)
      return t
    })
  : TARGETS

function run(cmd, args, opts = {}) {
  console.log(`$ ${cmd} ${args.join(' ')}`)
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts })
  return r.status === 0
}

/**
 * Puts napi-rs's gcc cross toolchain for `triple` where `napi build --use-napi-cross` looks for it. The CLI fetches the
 * toolchain package at its own version of `@napi-rs/cross-toolchain`; when the registry has no toolchain package of that
 * exact version, this takes the newest one of the same major version (the toolchain layout is the same).
 */
function prepareCrossToolchain(triple) {
  const { version } = require('@napi-rs/cross-toolchain/package.json')
  const dest = join(homedir(), '.napi-rs', 'cross-toolchain', version, triple)
  if (existsSync(join(dest, 'package.json'))) return
  const pkg = `@napi-rs/cross-toolchain-x64-target-${triple.split('-')[0]}`
  const view = spawnSync('npm', ['view', pkg, 'versions', '--json'], { encoding: 'utf8' })
  if (view.status !== 0) throw new Error(`npm view ${pkg} failed: ${view.stderr}`)
  const major = version.split('.')[0]
  const num = (v) => v.split('.').map(Number)
  const older = (a, b) => {
    const [x, y] = [num(a), num(b)]
    for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i] < y[i]
    return false
  }
  const candidates = /** @type {string[]} */ ([JSON.parse(view.stdout)].flat())
    .filter((v) => /^\d+\.\d+\.\d+$/.test(v) && v.split('.')[0] === major && !older(version, v))
    .sort((a, b) => (older(a, b) ? -1 : 1))
  const pick = candidates.at(-1)
  if (!pick) throw new Error(`no ${pkg} at ${major}.x up to ${version} on the registry`)
  const tmp = mkdtempSync(join(tmpdir(), 'napi-cross-'))
  try {
    if (!run('npm', ['pack', `${pkg}@${pick}`, '--pack-destination', tmp], { stdio: ['ignore', 'ignore', 'inherit'] }))
      throw new Error(`npm pack ${pkg}@${pick} failed`)
    const tgz = join(tmp, `napi-rs-cross-toolchain-x64-target-${triple.split('-')[0]}-${pick}.tgz`)
    mkdirSync(dest, { recursive: true })
    if (
      !run('tar', ['-xzf', tgz, '-C', tmp]) ||
      !run('tar', ['-xJf', join(tmp, 'package', `${triple}.tar.xz`), '-C', dest])
    )
      throw new Error(`unpacking ${tgz} failed`)
    console.log(`cross toolchain ${pkg}@${pick} unpacked into ${dest}`)
  } finally {
    rmSync(tmp, { recursive: true, force: true })
  }
}

const napiArgs = (t) => [
  'napi',
  'build',
  '--platform',
  '--release',
  '--target',
  t.triple,
  '--manifest-path',
  'crates/sockmap-node/Cargo.toml',
  '--package-json-path',
  'package.json',
  '--output-dir',
  'artifacts',
  '--no-js',
  '--dts',
  'binding.d.cts',
]

mkdirSync(out, { recursive: true })
const failed = []
const skipped = []
for (const t of selected) {
  if (!t.build) {
    skipped.push(`${t.suffix}: not built here: ${t.why}`)
    continue
  }
  rmSync(join(out, binaryName(t)), { force: true })
  let ok
  if (t.build === 'napi-cross') {
    prepareCrossToolchain(t.triple)
    ok = run('npx', [...napiArgs(t), '--use-napi-cross'])
  } else {
    ok = run('npx', [...napiArgs(t), '--cross-compile'])
  }
  if (!ok || !existsSync(join(out, binaryName(t)))) failed.push(t.suffix)
  else console.log(`built artifacts/${binaryName(t)}`)
}
for (const s of skipped) console.log(s)
if (failed.length) {
  console.error(`failed: ${failed.join(', ')}`)
  process.exit(1)
}
