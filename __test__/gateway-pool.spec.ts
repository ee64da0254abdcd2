// UpstreamPool against real redis-server processes: connections per server per shard, ring entries per server,
// ejection on a killed server and return after a passing health check, reconnects with backoff, reload.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { Engine, UpstreamPool, parsers } from '../src/index'
import { hostOf } from '../src/socket'
import { deadline, until } from './helpers'
import { needs, startRedis, type RedisServer } from './peers'

const haveRedis = needs('redis-server')

describe.skipIf(!haveRedis)('UpstreamPool (real redis-server)', () => {
  let a: RedisServer
  let b: RedisServer
  beforeAll(async () => {
    ;[a, b] = await Promise.all([startRedis(), startRedis()])
  })
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()])
  })

  const options = (ports: number[]) => ({
    upstreams: ports.map((p) => `127.0.0.1:${p}`),
    protocol: 'resp' as const,
    programs: { parser: parsers.resp() },
    connections: 2,
    healthCheck: { intervalMs: 50, timeoutMs: 500 },
    failures: 2,
    reconnect: { initialMs: 10, maxMs: 100 },
  })

  it('opens connections per server per shard, one near each shard, all in the ring', async () => {
    // Two shards (one where the loop runs inline, which drives one).
    await using engine = new Engine({ shards: process.env.SOCKMAP_DRIVE === 'inline' ? 1 : 2 })
    const n = 2 * engine.shards
    const pool = new UpstreamPool(engine, options([a.port, b.port]))
    await deadline(pool.ready(), 10_000, 'pool ready')
    expect(pool.upServers).toEqual([`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`])
    const stats = pool.stats()
    expect(stats.map((s) => [s.connections, s.slots, s.up])).toEqual([
      [n, n, true],
      [n, n, true],
    ])
    expect(pool.ring.size).toBe(2 * n)
    expect(pool.members.size).toBe(2 * n)
    // Every shard has connections to both servers (the key names the slot's shard; the socket says where it is).
    const keys = pool.ring
      .keys()
      .map((k) => k.toString())
      .sort()
    expect(keys).toEqual(
      [a.port, b.port]
        .flatMap((p) => ['0.0', '0.1', '1.0', '1.1'].slice(0, n).map((s) => `127.0.0.1:${p}#${s}`))
        .sort(),
    )
    // Each connection is on the shard its slot serves: a client of either shard finds every server on its own.
    for (const k of keys) {
      const sock = pool.members.get(k)
      expect(sock && hostOf(sock)?.binding.shardOf(sock.id)).toBe(Number(/#(\d)\./.exec(k)?.[1]))
    }
    await pool.close()
  })

  it('ejects a killed server (down once, its entries gone) and takes it back after a passing check', async () => {
    await using engine = new Engine()
    const pool = new UpstreamPool(engine, options([a.port, b.port]))
    const events: string[] = []
    pool.on('up', (s) => events.push(`up ${s}`))
    pool.on('down', (s) => events.push(`down ${s}`))
    await deadline(pool.ready(), 10_000, 'pool ready')
    expect(events).toEqual([`up 127.0.0.1:${a.port}`, `up 127.0.0.1:${b.port}`])
    const perServer = 2 * engine.shards
    expect(pool.ring.size).toBe(2 * perServer)

    await b.kill()
    await until(() => events.length === 3, 5000, 'down event')
    expect(events[2]).toBe(`down 127.0.0.1:${b.port}`)
    await until(() => pool.ring.size === perServer, 5000, 'b out of the ring')
    expect(pool.ring.keys().every((k) => k.toString().startsWith(`127.0.0.1:${a.port}#`))).toBe(true)
    // The health checks keep failing while it is dead: it stays out.
    await until(() => (pool.stats()[1]?.checksFailed ?? 0) >= 2, 5000, 'failed checks')
    expect(pool.upServers).toEqual([`127.0.0.1:${a.port}`])

    await b.restart()
    await until(() => events.length === 4, 5000, 'up event')
    expect(events[3]).toBe(`up 127.0.0.1:${b.port}`)
    expect(pool.ring.size).toBe(2 * perServer)
    const sb = pool.stats()[1]
    expect(sb?.ejections).toBe(1)
    expect(sb?.connections).toBe(perServer)
    // Every slot reconnected. On a loaded machine a slot may need more than one reconnection while the server starts
    // again, so this is a lower bound; `connections` above is exact.
    expect(sb?.reconnects).toBeGreaterThanOrEqual(perServer)
    expect(pool.metrics()).toContain(`sockmap_upstream_ejections_total{pool="default",server="127.0.0.1:${b.port}"} 1`)
    await pool.close()
  })

  it('reload adds and removes servers without touching the kept one', async () => {
    await using engine = new Engine()
    const pool = new UpstreamPool(engine, options([a.port]))
    await deadline(pool.ready(), 10_000, 'pool ready')
    const kept = pool.ring.get(`127.0.0.1:${a.port}#0.0`)
    expect(kept).toBeDefined()
    const perServer = 2 * engine.shards
    await pool.reload([`127.0.0.1:${b.port}`, `127.0.0.1:${a.port}`], 0)
    expect(pool.servers.sort()).toEqual([`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`].sort())
    expect(pool.ring.size).toBe(2 * perServer)
    expect(pool.ring.get(`127.0.0.1:${a.port}#0.0`)).toBe(kept)
    await pool.reload([`127.0.0.1:${b.port}`], 0)
    expect(pool.servers).toEqual([`127.0.0.1:${b.port}`])
    expect(pool.ring.size).toBe(perServer)
    await until(() => kept?.closed === true, 5000, 'removed server connection ended')
    await pool.close()
  })

  it('rejects bad options naming them', () => {
    const engine = new Engine()
    try {
      expect(() => new UpstreamPool(engine, { ...options([1]), upstreams: [] })).toThrow(/options.upstreams/)
      expect(() => new UpstreamPool(engine, { ...options([1]), upstreams: ['nope'] })).toThrow(RangeError)
      expect(() => new UpstreamPool(engine, { ...options([1]), upstreams: ['h:70000'] })).toThrow(/port/)
      expect(() => new UpstreamPool(engine, { ...options([1]), connections: 0 })).toThrow(/options.connections/)
      expect(() => new UpstreamPool(engine, { ...options([1, 1]) })).toThrow(/listed twice/)
    } finally {
      void engine.close()
    }
  })
})
