// The backends: what runs, why, how the choice is made, and the same bytes through each.
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'

import { afterEach, describe, expect, it } from 'vitest'

import { Engine, rules, type Socket } from '../src/index'
import { clientOf, codeOf, deadline, engineScope, listening, readN } from './helpers'

const { newEngine, clients } = engineScope()

// This file is about the backends and shards of the engine's I/O threads: it runs threaded whatever the matrix's
// SOCKMAP_DRIVE says (inline driving has its own file, inline.spec.ts).
process.env.SOCKMAP_DRIVE = 'threads'

/** Whether the kernel lets this process use io_uring (`kernel.io_uring_disabled`). */
function ioUringAllowed(): boolean {
  try {
    return readFileSync('/proc/sys/kernel/io_uring_disabled', 'latin1').trim() === '0'
  } catch {
    return process.platform === 'linux'
  }
}

/** The environment variables these tests set, restored after each (this file runs in its own process). */
const envKeys = ['SOCKMAP_BACKEND', 'SOCKMAP_IO_URING_FAULT', 'SOCKMAP_SHARDS'] as const
const saved = Object.fromEntries(envKeys.map((k) => [k, process.env[k]]))
afterEach(() => {
  for (const k of envKeys) {
    if (saved[k] === undefined) delete process.env[k]
    else process.env[k] = saved[k]
  }
})

describe('backend choice', () => {
  it('auto runs io_uring where the kernel allows it, with its features, and says so', () => {
    delete process.env.SOCKMAP_BACKEND
    const engine = newEngine({ backend: 'auto' })
    const info = engine.backendInfo
    expect(info.requested).toBe('auto')
    if (!ioUringAllowed()) {
      expect(engine.backend).toBe('epoll')
      expect(info.fallbacks).toHaveLength(1)
      return
    }
    expect(engine.backend).toBe('io_uring')
    expect(info).toMatchObject({ backend: 'io_uring', fallbacks: [] })
    expect(info.features).toEqual(expect.arrayContaining(['multishot-accept', 'multishot-recv', 'buffer-ring']))
    expect(newEngine({ backend: 'epoll' }).backendInfo).toEqual({
      backend: 'epoll',
      requested: 'epoll',
      features: ['edge-triggered', 'splice'],
      fallbacks: [],
    })
  })

  it('SOCKMAP_BACKEND chooses when the option is left out; the option wins; a bad name is EINVAL', () => {
    process.env.SOCKMAP_BACKEND = 'epoll'
    expect(newEngine().backendInfo).toMatchObject({ backend: 'epoll', requested: 'epoll' })
    if (ioUringAllowed()) expect(newEngine({ backend: 'io_uring' }).backend).toBe('io_uring')
    process.env.SOCKMAP_BACKEND = 'kqueue'
    expect(codeOf(() => new Engine())).toBe('EINVAL')
    expect(() => new Engine({ backend: 'kqueue' as 'epoll' })).toThrow(/options.backend/)
  })

  it('an explicit io_uring that cannot run throws with the errno; auto falls back to epoll and says why', () => {
    process.env.SOCKMAP_IO_URING_FAULT = 'setup'
    expect(codeOf(() => new Engine({ backend: 'io_uring' }))).toBe('EPERM')
    const engine = newEngine({ backend: 'auto' })
    expect(engine.backend).toBe('epoll')
    expect(engine.backendInfo.fallbacks[0]).toMatch(/io_uring_setup failed with EPERM/)
    process.env.SOCKMAP_IO_URING_FAULT = 'probe'
    expect(codeOf(() => new Engine({ backend: 'io_uring' }))).toBe('EOPNOTSUPP')
  })

  it.runIf(ioUringAllowed())('a refused buffer ring keeps io_uring with single-shot receives, and says so', () => {
    process.env.SOCKMAP_IO_URING_FAULT = 'buf_ring'
    const info = newEngine({ backend: 'io_uring' }).backendInfo
    expect(info.backend).toBe('io_uring')
    expect(info.features).not.toContain('buffer-ring')
    expect(info.fallbacks[0]).toMatch(/single-shot receives/)
  })
})

/** A pattern stream: a lost, doubled or reordered chunk changes the bytes. */
function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) % 251
  return b
}

const modes: Array<{ name: string; backend: 'epoll' | 'io_uring'; fault?: string }> = [
  { name: 'epoll', backend: 'epoll' },
  { name: 'io_uring', backend: 'io_uring' },
  { name: 'io_uring, single-shot receives', backend: 'io_uring', fault: 'buf_ring' },
]

describe.each(modes)('the same bytes through $name', ({ backend, fault }) => {
  it.runIf(backend === 'epoll' || ioUringAllowed())(
    'a redirecting pair moves 2 MiB each way, exactly and in order, and ends cleanly',
    async () => {
      if (fault) process.env.SOCKMAP_IO_URING_FAULT = fault
      const engine = newEngine({ backend, recvBuffers: 8, readBuffer: 16384 })
      expect(engine.backend).toBe(backend)
      const server = await listening(engine)
      const a = await clientOf(server)
      const b = await clientOf(server)
      clients.push(a.client, b.client)
      const peers = engine.sockHash({ maxEntries: 4 })
      peers.attach({ verdict: rules.redirect(peers, rules.key.socket) })
      peers.set(a.sock.id, b.sock).set(b.sock.id, a.sock)
      const there = pattern(2 << 20, 1)
      const back = pattern(2 << 20, 2)
      const gotThere = readN(b.client, there.length, 20_000)
      const gotBack = readN(a.client, back.length, 20_000)
      a.client.write(there)
      b.client.write(back)
      expect((await gotThere).equals(there)).toBe(true)
      expect((await gotBack).equals(back)).toBe(true)
      const ended = deadline(
        new Promise<void>((r) => b.client.once('end', () => r())),
        5000,
        'the FIN through the pair',
      )
      a.client.end()
      await ended
      expect(a.sock.stats().bytesIn).toBe(there.length)
      expect(b.sock.stats().bytesOut).toBe(there.length)
      const bs = engine.backendStats()
      expect(bs.waits).toBeGreaterThan(0)
      // Bulk bytes between partners go by splice on epoll (one I/O thread, so the pair shares it).
      if (backend === 'epoll' && engine.shards === 1) expect(bs.spliced).toBeGreaterThan(0)
      if (backend === 'io_uring') expect(bs.spliced).toBe(0)
    },
  )
})

describe('shards', () => {
  it('runs the I/O threads asked for, with auto as the usable cores; bad counts are RangeErrors', () => {
    delete process.env.SOCKMAP_SHARDS
    expect(newEngine().shards).toBe(1)
    expect(newEngine({ shards: 2 }).shards).toBe(2)
    expect(newEngine({ shards: 'auto' }).shards).toBe(availableParallelism())
    process.env.SOCKMAP_SHARDS = '2'
    expect(newEngine().shards).toBe(2)
    expect(newEngine({ shards: 1 }).shards).toBe(1)
    process.env.SOCKMAP_SHARDS = 'many'
    expect(codeOf(() => new Engine())).toBe('EINVAL')
    expect(() => new Engine({ shards: 0 })).toThrow(RangeError)
    expect(() => new Engine({ shards: 257 })).toThrow(/options.shards/)
  })

  it('connects near a socket of the engine, and refuses anything else as near', async () => {
    const engine = newEngine({ shards: 2 })
    const server = await listening(engine)
    const a = await clientOf(server)
    clients.push(a.client)
    const accepted = new Promise<Socket>((r) => server.once('connection', r))
    const up = await deadline(engine.connect({ port: server.address().port, near: a.sock }), 5000, 'connect near')
    const b = await deadline(accepted, 5000, 'the upstream accepted')
    const peers = engine.sockHash({ maxEntries: 4 })
    peers.attach({ verdict: rules.redirect(peers, rules.key.socket) })
    peers.set(a.sock.id, up).set(up.id, a.sock)
    b.resume()
    const got = deadline(once(b, 'message'), 5000, 'a message through the pair')
    a.client.write('near')
    expect(((await got)[0] as Buffer).toString()).toBe('near')
    const other = newEngine()
    const foreign = await clientOf(await listening(other))
    clients.push(foreign.client)
    expect(() => engine.connect({ port: 1, near: foreign.sock })).toThrow(/options.near/)
  })
})
