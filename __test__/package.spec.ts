import { execFileSync } from 'node:child_process'
import { resolve } from 'node:path'

import { describe, expect, it } from 'vitest'

const root = resolve(__dirname, '..')

function run(args: string[]): string {
  return execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8', timeout: 20_000 }).trim()
}

describe('the built package', () => {
  it('works for CommonJS consumers', () => {
    const out = run([
      '-e',
      "const s = require('sockmap'); const r = new s.SgRing(); r.append(Buffer.from('cjs')); console.log(r.toBuffer().toString())",
    ])
    expect(out).toBe('cjs')
  })

  it('works for ES module consumers and shares the CommonJS objects', () => {
    const out = run([
      '--input-type=module',
      '-e',
      "import { SgRing } from 'sockmap'; import { createRequire } from 'node:module'; const r = new SgRing(); r.append(Buffer.from('esm')); console.log(r.toBuffer().toString(), SgRing === createRequire(import.meta.url)('sockmap').SgRing)",
    ])
    expect(out).toBe('esm true')
  })
})
