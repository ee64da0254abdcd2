// The root package as published: its optionalDependencies list every per-platform package under npm/ at the root's
// exact version, which is what `napi prepublish` writes before `npm publish` (the repository's own package.json has
// none, so that installing the repository never asks the registry for platform packages).
//
//   node scripts/release-manifest.mjs OUT_DIR   writes OUT_DIR/package.json: the root's, with optionalDependencies
import { readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'

const root = resolve(import.meta.dirname, '..')

/** The per-platform packages under npm/, by folder name. */
export function platformPackages() {
  return readdirSync(join(root, 'npm'), { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => ({
      dir: d.name,
      manifest: JSON.parse(readFileSync(join(root, 'npm', d.name, 'package.json'), 'utf8')),
    }))
    .sort((a, b) => a.dir.localeCompare(b.dir))
}

/** The root package.json with the published optionalDependencies. */
export function releaseManifest() {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
  const optionalDependencies = Object.fromEntries(platformPackages().map((p) => [p.manifest.name, pkg.version]))
  return { ...pkg, optionalDependencies }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const out = process.argv[2]
  if (!out) throw new Error('usage: node scripts/release-manifest.mjs OUT_DIR')
  writeFileSync(join(out, 'package.json'), `${JSON.stringify(releaseManifest(), null, 2)}\n`)
}
