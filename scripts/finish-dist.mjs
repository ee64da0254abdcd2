// Completes dist/ after `tsc`: copies the native loader and binding types next to the compiled code, links the local
// addon (when built) so that a later `npm run build:native` reaches dist/ too (a copy on Windows), and writes the ES
// module entry point that re-exports the CommonJS build.
import { copyFileSync, existsSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join, resolve } from 'node:path'

const src = 'src'
const dist = 'dist'
for (const file of readdirSync(src)) {
  if (['binding.cjs', 'binding.d.cts', 'native.cjs', 'native.d.cts'].includes(file)) {
    copyFileSync(join(src, file), join(dist, file))
  } else if (file.endsWith('.node')) {
    rmSync(join(dist, file), { force: true })
    if (process.platform === 'win32') copyFileSync(join(src, file), join(dist, file))
    else symlinkSync(join('..', src, file), join(dist, file))
  }
}
if (!existsSync(join(dist, 'index.js'))) throw new Error('dist/index.js is missing: run tsc first')

const names = Object.keys(createRequire(import.meta.url)(resolve(dist, 'index.js'))).filter((n) => n !== 'default')
const esm = [
  '// ES module entry point: the same objects as the CommonJS build, so both kinds of consumer share one engine.',
  "import cjs from './index.js'",
  `export const { ${names.join(', ')} } = cjs`,
  'export default cjs',
  '',
].join('\n')
writeFileSync(join(dist, 'index.mjs'), esm)
writeFileSync(join(dist, 'index.d.mts'), "export * from './index.js'\n")
