// Inline driving: the engine's loop on the JavaScript thread, and batching that never waits on an idle engine.
import { readdirSync, readFileSync } from 'node:fs'

import { describe, expect, it } from 'vitest'

import { Engine, parsers } from '../src/index'
import { codeOf, connections, engineScope, readN } from './helpers'

const { newEngine, clients } = engineScope()

/** The engine I/O threads of this process. */
function ioThreads(): number {
  return readdirSync('/proc/self/task').filter((t) => {
    try {
      return readFileSync(`/proc/self/task/${t}/comm`, 'latin1').startsWith('sockmap-io')
    } catch {
      return false
    }
  }).length
}

describe('inline driving', () => {
  it('runs one shard on the readiness backend, on this thread, and says so', () => {
    const before = process.platform === 'linux' ? ioThreads() : 0
    const engine = newEngine({ drive: 'inline', backend: 'auto' })
    expect(engine.drive).toBe('inline')
    expect(engine.shards).toBe(1)
    expect(engine.backend).toBe(process.platform === 'linux' ? 'epoll' : 'poll')
    if (process.platform === 'linux') {
      expect(engine.backendInfo.fallbacks).toEqual(['inline driving: io_uring not used, using epoll'])
      expect(ioThreads()).toBe(before)
    }
    expect(newEngine({ drive: 'threads' }).drive).toBe('threads')
  })

  it('refuses io_uring and several shards, and names a bad drive', () => {
    expect(codeOf(() => new Engine({ drive: 'inline', backend: 'io_uring' }))).toBe('EOPNOTSUPP')
    expect(codeOf(() => new Engine({ drive: 'inline', shards: 2 }))).toBe('EINVAL')
    expect(() => new Engine({ drive: 'fibers' as 'inline' })).toThrow(/options\.drive/)
    const saved = process.env.SOCKMAP_DRIVE
    try {
      process.env.SOCKMAP_DRIVE = 'inline'
      expect(newEngine().drive).toBe('inline')
      process.env.SOCKMAP_DRIVE = 'fibers'
      expect(codeOf(() => new Engine())).toBe('EINVAL')
    } finally {
      if (saved === undefined) delete process.env.SOCKMAP_DRIVE
      else process.env.SOCKMAP_DRIVE = saved
    }
  })

  it('moves 1 MiB each way through a TypeScript verdict pair, exactly and in order', async () => {
    const engine = newEngine({ drive: 'inline' })
    const [a, b] = await connections(engine, 2, clients)
    const peers = engine.sockHash({ maxEntries: 4 })
    peers.attach({ verdict: (msg) => msg.redirect(peers, msg.socket) })
    peers.set(a!.sock.id, b!.sock).set(b!.sock.id, a!.sock)
    const size = 1 << 20
    const pattern = (seed: number): Buffer => Buffer.from(Array.from({ length: size }, (_, i) => (i * 7 + seed) & 0xff))
    const [ab, ba] = [pattern(1), pattern(2)]
    const atB = readN(b!.client, size, 20_000)
    const atA = readN(a!.client, size, 20_000)
    a!.client.write(ab)
    b!.client.write(ba)
    expect((await atB).equals(ab)).toBe(true)
    expect((await atA).equals(ba)).toBe(true)
    expect(engine.stats().verdictMessages).toBeGreaterThan(0)
  })
})

describe.each<[string, 'threads' | 'inline']>([
  ['threads', 'threads'],
  ['inline', 'inline'],
])('batching (%s)', (_name, drive) => {
  it('hands a lone message to JavaScript at once on an idle engine, whatever maxDelayMicros says', async () => {
    // A batch would wait up to a second for company; 20 exchanges in a row finish long before 20 seconds.
    const engine = newEngine({ drive, batch: { maxDelayMicros: 1_000_000 } })
    const [a, b] = await connections(engine, 2, clients)
    const peers = engine.sockHash({ maxEntries: 4 })
    peers.attach({ parser: parsers.lines(), verdict: (msg) => msg.redirect(peers, msg.socket) })
    peers.set(a!.sock.id, b!.sock).set(b!.sock.id, a!.sock)
    const started = Date.now()
    for (let i = 0; i < 20; i++) {
      const got = readN(b!.client, `m${i}`.length, 5000)
      a!.client.write(`m${i}\n`)
      expect((await got).toString()).toBe(`m${i}`)
    }
    expect(Date.now() - started).toBeLessThan(10_000)
    expect(engine.stats().verdictMessages).toBe(20)
  })

  it('still forms batches under load: far fewer crossings than messages', async () => {
    const engine = newEngine({ drive })
    const n = 8
    const conns = await connections(engine, 2 * n, clients)
    const peers = engine.sockHash({ maxEntries: 64 })
    const sources = engine.sockMap({ maxEntries: n })
    sources.attach({ parser: parsers.lines(), verdict: (msg) => msg.redirect(peers, msg.socket) })
    for (let i = 0; i < n; i++) {
      peers.set(conns[i]!.sock.id, conns[n + i]!.sock)
      sources.set(i, conns[i]!.sock)
    }
    const lines = 2000
    const payload = (i: number): string => Array.from({ length: lines }, (_, r) => `${i}:${r}\n`).join('')
    const expected = (i: number): string => Array.from({ length: lines }, (_, r) => `${i}:${r}`).join('')
    const reads = conns.slice(n).map((d, i) => readN(d.client, expected(i).length, 20_000))
    for (let i = 0; i < n; i++) conns[i]!.client.write(payload(i))
    const got = await Promise.all(reads)
    got.forEach((g, i) => expect(g.toString()).toBe(expected(i)))
    const s = engine.stats()
    expect(s.verdictMessages).toBe(n * lines)
    expect(s.batches * 10).toBeLessThan(s.verdictMessages)
  })
})
