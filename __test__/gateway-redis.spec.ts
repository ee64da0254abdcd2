// The Redis gateway with real clients (ioredis, redis-cli) against two real redis-servers: every key on its shard
// and nowhere else (twemproxy's ketama placement, checked through nutcracker), pipelined replies in order, MGET/MSET
// across shards, local replies and refusals, a killed backend's error replies, its ejection and return, and a
// draining SIGTERM of the command.
import { execFile } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

import Redis from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'

import { RedisGateway, type GatewayMessage } from '../src/index'
import { deadline, programPath, until } from './helpers'
import { freePorts, needs, redisCall, respOf, runCli, startRedis, type RedisServer } from './peers'

const run = promisify(execFile)
const ready = needs('redis-server')

/**
 * `n` keys spread over the ring: twemproxy's fnv1a_64 (truncated to 32 bits) puts keys that differ only in their last
 * characters next to each other, so keys like `k:1`, `k:2`... would all land on one server.
 */
function spread(prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${(i * 2654435761) % 1_000_000_007}:${prefix}`)
}

/** An ioredis client that sends only what the test asks (no ready check, no retries). */
function client(port: number): Redis {
  return new Redis({
    host: '127.0.0.1',
    port,
    enableReadyCheck: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    lazyConnect: true,
  })
}

describe.skipIf(!ready)('RedisGateway (real redis-servers, ioredis, redis-cli)', () => {
  let a: RedisServer
  let b: RedisServer
  let gw: RedisGateway
  let port: number
  const clients: Redis[] = []
  const open = async (): Promise<Redis> => {
    const c = client(port)
    clients.push(c)
    await c.connect()
    return c
  }

  beforeAll(async () => {
    ;[a, b] = await Promise.all([startRedis(), startRedis()])
    gw = new RedisGateway({
      listen: '127.0.0.1:0',
      upstreams: [
        { port: a.port, name: 's0' },
        { port: b.port, name: 's1' },
      ],
      healthCheck: { intervalMs: 50, timeoutMs: 500 },
      failures: 1,
      reconnect: { initialMs: 10, maxMs: 100 },
    })
    port = (await gw.listen()).port
  })
  afterEach(async () => {
    for (const c of clients.splice(0)) c.disconnect()
    await Promise.all([a, b].map((r) => redisCall(r.port, ['FLUSHALL'])))
  })
  afterAll(async () => {
    await gw?.close({ drainMs: 100 })
    await Promise.all([a?.stop(), b?.stop()])
  })

  it('stores every key on one shard, the one twemproxy (ketama, fnv1a_64) picks, and nowhere else', async () => {
    const c = await open()
    const keys = spread('user', 200)
    for (const k of keys) expect(await c.set(k, `v-${k}`)).toBe('OK')
    const onA = await redisCall(a.port, ...keys.map((k) => ['EXISTS', k]))
    const onB = await redisCall(b.port, ...keys.map((k) => ['EXISTS', k]))
    for (let i = 0; i < keys.length; i++) expect((onA[i] as number) + (onB[i] as number)).toBe(1)
    const countA = onA.filter((x) => x === 1).length
    expect(countA).toBeGreaterThan(40)
    expect(countA).toBeLessThan(160)
    if (!programPath('nutcracker')) return
    // nutcracker with the same servers and names reads every key back from where the gateway wrote it.
    const [np, statsPort] = (await freePorts(2)) as [number, number]
    const dir = mkdtempSync(join(tmpdir(), 'sockmap-nc-'))
    const conf = join(dir, 'nc.yml')
    writeFileSync(
      conf,
      `p:\n  listen: 127.0.0.1:${np}\n  hash: fnv1a_64\n  distribution: ketama\n  hash_tag: "{}"\n  redis: true\n` +
        `  servers:\n    - 127.0.0.1:${a.port}:1 s0\n    - 127.0.0.1:${b.port}:1 s1\n`,
    )
    const nc = execFile('nutcracker', ['-c', conf, '-s', String(statsPort)])
    try {
      let got: unknown[] = []
      const end = Date.now() + 5000
      for (;;) {
        try {
          got = await redisCall(np, ...keys.map((k) => ['GET', k]))
          break
        } catch (e) {
          if (Date.now() > end) throw e
          await new Promise((r) => setTimeout(r, 50))
        }
      }
      expect(got).toEqual(keys.map((k) => `v-${k}`))
    } finally {
      nc.kill('SIGKILL')
    }
  })

  it('honours {hash tags}: keys with one tag share a shard', async () => {
    const c = await open()
    // Spread keys would go to both shards (see the first test); with one tag they all go to one.
    const keys = spread('line', 30).map((k) => `{order:7}:${k}`)
    for (const k of keys) await c.set(k, '1')
    const onA = (await redisCall(a.port, ['DBSIZE']))[0] as number
    const onB = (await redisCall(b.port, ['DBSIZE']))[0] as number
    expect([onA, onB].sort()).toEqual([0, 30])
  })

  it('answers a pipeline of 500 commands over both shards in order', async () => {
    const c = await open()
    const p = c.pipeline()
    for (let i = 0; i < 250; i++) p.set(`k${i}`, `${i}`).get(`k${i}`)
    const replies = await p.exec()
    expect(replies?.map(([err, v]) => (err ? String(err) : v))).toEqual(
      Array.from({ length: 250 }, (_, i) => ['OK', `${i}`]).flat(),
    )
  })

  it('splits MSET, MGET, DEL, EXISTS across shards and merges the replies', async () => {
    const c = await open()
    const keys = spread('m', 20)
    expect(await c.mset(Object.fromEntries(keys.map((k) => [k, `x${k}`])))).toBe('OK')
    expect(await c.mget(...keys, 'missing')).toEqual([...keys.map((k) => `x${k}`), null])
    const sizes = await Promise.all([a, b].map((r) => redisCall(r.port, ['DBSIZE'])))
    expect(sizes.map((s) => s[0] as number).every((n) => n > 0)).toBe(true)
    expect(await c.exists(...keys.slice(0, 10), 'missing')).toBe(10)
    expect(await c.del(...keys.slice(0, 5))).toBe(5)
    expect(await c.exists(...keys)).toBe(15)
  })

  it('answers PING, ECHO, SELECT 0 locally and refuses KEYS and FLUSHALL (redis-cli)', async () => {
    if (!programPath('redis-cli')) return
    const cli = async (...args: string[]): Promise<string> =>
      (await run('redis-cli', ['-p', String(port), '--no-raw', ...args], { timeout: 5000 })).stdout.trim()
    expect(await cli('PING')).toBe('PONG')
    expect(await cli('ECHO', 'hi')).toBe('"hi"')
    expect(await cli('SELECT', '0')).toBe('OK')
    expect(await cli('SET', 'cli:1', 'one')).toBe('OK')
    expect(await cli('GET', 'cli:1')).toBe('"one"')
    expect(await cli('KEYS', '*')).toMatch(/^\(error\) ERR/)
    expect(await cli('FLUSHALL')).toMatch(/^\(error\) ERR/)
    // The refused FLUSHALL reached no server.
    expect((await redisCall(a.port, ['DBSIZE']))[0] as number).toBeGreaterThanOrEqual(0)
    expect(
      ((await redisCall(a.port, ['EXISTS', 'cli:1']))[0] as number) +
        ((await redisCall(b.port, ['EXISTS', 'cli:1']))[0] as number),
    ).toBe(1)
  })

  it('gives error replies while a backend is dead, ejects it, and uses it again once it is back', async () => {
    const c = await open()
    // A key of each shard.
    const keys = spread('e', 50)
    for (const k of keys) await c.set(k, 'v')
    const onB = (await redisCall(b.port, ...keys.map((k) => ['EXISTS', k]))).map((x) => x === 1)
    const kb = keys[onB.indexOf(true)] as string
    const ka = keys[onB.indexOf(false)] as string
    const events: string[] = []
    gw.on('down', (s) => events.push(`down ${s}`))
    gw.on('up', (s) => events.push(`up ${s}`))

    await b.kill()
    // Until the pool has ejected it, a request for b fails with an error reply (never a hang, never a wrong reply).
    const r = await c.get(kb).then(
      (v) => ({ v }),
      (e: Error) => ({ e: e.message }),
    )
    if ('e' in r) expect(r.e).toMatch(/sockmap|ERR/)
    await until(() => events.includes('down s1'), 5000, 's1 ejected')
    expect(gw.pool.upServers).toEqual(['s0'])
    // Ejected: its keys go to the remaining server.
    expect(await c.set(kb, 'moved')).toBe('OK')
    expect((await redisCall(a.port, ['GET', kb]))[0]).toBe('moved')
    expect(await c.get(ka)).toBe('v')

    await b.restart()
    await until(() => events.includes('up s1'), 10_000, 's1 back')
    expect(await c.set(kb, 'home')).toBe('OK')
    expect((await redisCall(b.port, ['GET', kb]))[0]).toBe('home')
    const s = gw.stats().upstreams.find((u) => u.server === 's1')
    expect(s?.ejections).toBeGreaterThanOrEqual(1)
  })

  it('checks AUTH at the gateway before forwarding anything', async () => {
    const gw2 = new RedisGateway({ listen: '127.0.0.1:0', upstreams: [`127.0.0.1:${a.port}`], password: 'sesame' })
    const p2 = (await gw2.listen()).port
    try {
      const [before, wrong, right, after] = await redisCall(
        p2,
        ['SET', 'auth:1', 'x'],
        ['AUTH', 'nope'],
        ['AUTH', 'sesame'],
        ['SET', 'auth:1', 'y'],
      )
      expect(String(before)).toMatch(/NOAUTH/)
      expect(String(wrong)).toMatch(/WRONGPASS|invalid password/i)
      expect([right, after]).toEqual(['OK', 'OK'])
      // Only the authenticated SET reached the server.
      expect((await redisCall(a.port, ['GET', 'auth:1']))[0]).toBe('y')
    } finally {
      await gw2.close({ drainMs: 100 })
    }
  })

  it('a TS policy verdict refuses with a reply and routes the rest', async () => {
    const gw2 = new RedisGateway({
      listen: '127.0.0.1:0',
      upstreams: [`127.0.0.1:${a.port}`],
      verdict: (msg: GatewayMessage, route) =>
        msg.resp?.command.toUpperCase() === 'DEL' ? msg.reply('-ERR no deletes here\r\n') : route(),
    })
    const p2 = (await gw2.listen()).port
    try {
      const replies = await redisCall(p2, ['SET', 'pol', '1'], ['DEL', 'pol'], ['GET', 'pol'])
      expect(replies[0]).toBe('OK')
      expect(String(replies[1])).toMatch(/no deletes here/)
      expect(replies[2]).toBe('1')
    } finally {
      await gw2.close({ drainMs: 100 })
    }
  })
})

describe.skipIf(!ready)('sockmap redis (the command)', () => {
  let a: RedisServer
  beforeAll(async () => {
    a = await startRedis()
  })
  afterAll(async () => {
    await a?.stop()
  })

  it('loads a TypeScript policy verdict from --verdict', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sockmap-verdict-'))
    const file = join(dir, 'policy.ts')
    writeFileSync(
      file,
      [
        'type Msg = { resp?: { command: string }; reply(data: string): number }',
        'export default function policy(msg: Msg, route: () => number): number {',
        "  return msg.resp?.command.toUpperCase() === 'DEL' ? msg.reply('-ERR no deletes\\r\\n') : route()",
        '}',
        '',
      ].join('\n'),
    )
    const cli = runCli(['redis', '--listen', '127.0.0.1:0', '--upstream', `127.0.0.1:${a.port}`, '--verdict', file])
    try {
      const port = Number((await cli.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1])
      const replies = await redisCall(port, ['SET', 'v:1', 'x'], ['DEL', 'v:1'], ['GET', 'v:1'])
      expect(replies[0]).toBe('OK')
      expect(String(replies[1])).toMatch(/no deletes/)
      expect(replies[2]).toBe('x')
      cli.child.kill('SIGTERM')
      expect(await cli.exited()).toBe(0)
    } finally {
      cli.child.kill('SIGKILL')
    }
  })

  it('drains the requests in flight on SIGTERM and exits 0', async () => {
    await redisCall(a.port, ['FLUSHALL'])
    const cli = runCli([
      'redis',
      '--listen',
      '127.0.0.1:0',
      '--upstream',
      `127.0.0.1:${a.port}`,
      '--drain-timeout',
      '5',
    ])
    try {
      const port = Number((await cli.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1])
      const sock = net.connect({ host: '127.0.0.1', port })
      await deadline(new Promise((r) => sock.once('connect', r)), 5000, 'connect')
      const n = 2000
      let got = ''
      let signalled = false
      const all = new Promise<void>((resolve) => {
        sock.on('data', (d) => {
          got += d.toString()
          if (!signalled) {
            signalled = true
            cli.child.kill('SIGTERM')
          }
          if (got.length >= n * 5) resolve()
        })
      })
      sock.write(Buffer.concat(Array.from({ length: n }, (_, i) => respOf(['SET', `d${i}`, 'x']))))
      await deadline(all, 10_000, 'every reply')
      expect(got).toBe('+OK\r\n'.repeat(n))
      expect(await cli.exited()).toBe(0)
      expect((await redisCall(a.port, ['DBSIZE']))[0]).toBe(n)
      sock.destroy()
    } finally {
      cli.child.kill('SIGKILL')
    }
  })
})
