import { execFile } from 'node:child_process'
import { resolve } from 'node:path'

import { describe, expect, it } from 'vitest'

const root = resolve(__dirname, '..')

describe('the gateway demo (npm run demo)', () => {
  it('routes every message and exits 0', async () => {
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>(
      (done) => {
        const child = execFile(
          process.execPath,
          ['--import', 'tsx', 'examples/gateway.ts'],
          { cwd: root, env: { ...process.env, DEMO_DURATION_MS: '400' }, timeout: 60_000 },
          (err, stdout, stderr) => done({ code: err ? (child.exitCode ?? 1) : 0, stdout, stderr }),
        )
      },
    )
    expect(stderr).not.toMatch(/not delivered|Error/)
    expect(code).toBe(0)
    expect(stdout).toMatch(/sockmap \+ TS verdict/)
    expect(stdout).toMatch(/node:net router/)
    // Both rows report zero lost messages and the TS row reports no drops.
    expect(stdout).toMatch(/redirected, 0 dropped/)
  }, 90_000)
})
