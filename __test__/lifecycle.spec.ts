import { spawn } from 'node:child_process'
import { resolve } from 'node:path'

import { describe, expect, it } from 'vitest'

import { runFixture } from './helpers'

const fixtures = resolve(__dirname, 'fixtures')

const run = runFixture

describe('process lifetime', () => {
  it('an unref’d engine lets the process exit', async () => {
    const r = await run(['exit.cjs', 'unref'], 10_000)
    expect(r).toMatchObject({ code: 0, stdout: 'unref' })
  })

  it('await engine.close() lets the process exit; sockets report closed', async () => {
    const r = await run(['exit.cjs', 'close'], 10_000)
    expect(r).toMatchObject({ code: 0, stdout: 'closed true' })
  })

  it('a listening engine keeps the process alive (ref)', async () => {
    const child = spawn(process.execPath, ['exit.cjs', 'ref'], { cwd: fixtures, stdio: 'ignore' })
    const exited = new Promise<boolean>((r) => child.once('exit', () => r(true)))
    const alive = await Promise.race([exited, new Promise<boolean>((r) => setTimeout(() => r(false), 700))])
    child.kill('SIGKILL')
    expect(alive).toBe(false)
  })
})

describe('worker_threads', () => {
  it.each([
    ['threads', 'stops its I/O thread'],
    ['inline', 'closes its event-loop handles'],
  ])(
    'runs engines in several workers (%s); terminating one %s and its sockets while the others go on',
    async (drive) => {
      const r = await run(['workers.cjs', drive], 20_000)
      expect(r.code, r.stderr).toBe(0)
      const out = JSON.parse(r.stdout) as {
        shards: number
        before: number
        afterOne: number
        afterAll: number
        socketsBefore: number
        socketsAfterOne: number
        socketsAfterAll: number
        echoed: number[]
      }
      // Inline engines run on their worker's own thread: no I/O threads at all.
      const threads = drive === 'inline' ? 0 : out.shards
      expect(out.shards).toBeGreaterThanOrEqual(1)
      expect(out.before).toBe(3 * threads)
      expect(out.afterOne).toBe(2 * threads)
      expect(out.afterAll).toBe(0)
      // Each worker holds a listener, the accepted socket and its client (the process may hold inherited sockets).
      expect(out.socketsBefore - out.socketsAfterOne).toBe(3)
      expect(out.socketsBefore - out.socketsAfterAll).toBe(9)
    },
  )
})

describe('garbage collection', () => {
  it('collects engines, servers, maps and sockets after close', async () => {
    const r = await run(['--expose-gc', 'gc.cjs'], 20_000)
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual({ total: 12, alive: 0 })
  })
})
