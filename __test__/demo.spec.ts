// `npm run demo` (examples/gateway.ts) as a child process: it exits 0, shows the three paths, the gateway row spreads
// the keys over both shards, FLUSHALL is refused through the gateway, and no path has an error.
import { execFile } from 'node:child_process'
import { resolve } from 'node:path'

import { describe, expect, it } from 'vitest'

const root = resolve(__dirname, '..')

describe('the gateway demo (npm run demo)', () => {
  it('runs the load direct, through the gateway and through a Node proxy with 0 errors, and exits 0', async () => {
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>(
      (done) => {
        const child = execFile(
          process.execPath,
          ['--import', 'tsx', 'examples/gateway.ts'],
          { cwd: root, env: { ...process.env, DEMO_DURATION_MS: '400', DEMO_CONNECTIONS: '8' }, timeout: 60_000 },
          (err, stdout, stderr) => done({ code: err ? (child.exitCode ?? 1) : 0, stdout, stderr }),
        )
      },
    )
    expect(stderr).toBe('')
    expect(code).toBe(0)
    const row = (name: RegExp): string => stdout.split('\n').find((l) => name.test(l) && l.includes('│')) ?? ''
    const direct = row(/direct to redis A/)
    const gateway = row(/sockmap gateway \(A \+ B/)
    const proxy = row(/node:net proxy to redis A/)
    for (const r of [direct, gateway, proxy]) expect(r).toMatch(/│ 0 {6}│$/)
    // Direct and the Node proxy reach A only; the gateway spreads the keys over A and B.
    expect(direct).toMatch(/'A [1-9]\d* \/ B 0'/)
    const shards = /'A (\d+) \/ B (\d+)'/.exec(gateway)
    expect(Number(shards?.[1])).toBeGreaterThan(0)
    expect(Number(shards?.[2])).toBeGreaterThan(0)
    expect(stdout).toMatch(/FLUSHALL through the gateway: -ERR /)
  }, 90_000)
})
