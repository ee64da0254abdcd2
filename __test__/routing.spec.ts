// Routing rules through real sockets: roundRobin, httpRoute, hashRoute's ring against real twemproxy (nutcracker).
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { afterAll, describe, expect, it } from 'vitest'

import { parsers, rules, type SockHash, type Socket } from '../src/index'
import {
  acknowledged,
  codeOf,
  connections,
  deadline,
  engineScope,
  freePorts,
  missingPrograms,
  programPath,
  readN,
  respCommand,
  soloMap,
  until,
  untilListening,
} from './helpers'

const { newEngine, clients } = engineScope()

/** Everything each node:net client receives, appended as it arrives. */
function recorders(peers: Array<{ client: net.Socket }>): Buffer[] {
  const got = peers.map(() => Buffer.alloc(0))
  peers.forEach((p, i) => p.client.on('data', (d: Buffer) => (got[i] = Buffer.concat([got[i]!, d]))))
  return got
}

const total = (bufs: Buffer[]): number => bufs.reduce((n, b) => n + b.length, 0)

/** The second element (the key) of each RESP array of bulk strings in `buf`. */
function respKeys(buf: Buffer): string[] {
  const keys: string[] = []
  let at = 0
  const line = (): string => {
    const end = buf.indexOf('\r\n', at)
    if (end < 0) throw new Error(`unterminated line at ${at}`)
    const s = buf.toString('latin1', at, end)
    at = end + 2
    return s
  }
  while (at < buf.length) {
    const count = Number(line().slice(1))
    for (let i = 0; i < count; i++) {
      const len = Number(line().slice(1))
      if (i === 1) keys.push(buf.toString('utf8', at, at + len))
      at += len + 2
    }
  }
  return keys
}

describe('rules.roundRobin', () => {
  it('sends each message to the next entry in key order, on the source socket’s I/O thread when it can', async () => {
    const engine = newEngine()
    const [src, ...targets] = await connections(engine, 4, clients)
    const pool = engine.sockHash({ maxEntries: 8 })
    // Set out of order: key order is a, b, c.
    pool.set('c', targets[0]!.sock)
    pool.set('a', targets[1]!.sock)
    pool.set('b', targets[2]!.sock)
    const byKey = [targets[1]!, targets[2]!, targets[0]!]
    const got = recorders(byKey)
    const front = soloMap(engine, src!.sock, { parser: parsers.fixed(2), verdict: rules.roundRobin(pool) })
    const msgs = Array.from({ length: 9 }, (_, i) => `m${i}`)
    src!.client.write(msgs.join(''))
    await until(() => total(got) === 18, 5000, 'every message delivered')
    await acknowledged(src!.sock)
    expect(front.stats().redirectedEgress).toBe(9)
    // The entries that took messages (all of them on one I/O thread; those on the source's thread otherwise) take
    // turns in key order.
    const takers = got.map((b, i) => [b, i] as const).filter(([b]) => b.length > 0)
    if (engine.shards === 1) expect(takers.length).toBe(3)
    takers.forEach(([b], j) => {
      const mine = msgs.filter((_, i) => i % takers.length === j).join('')
      expect(b.toString()).toBe(mine)
    })
  })

  it('drops when the pool is empty', async () => {
    const engine = newEngine()
    const [src] = await connections(engine, 1, clients)
    const pool = engine.sockHash({ maxEntries: 8 })
    const front = soloMap(engine, src!.sock, { parser: parsers.fixed(2), verdict: rules.roundRobin(pool) })
    src!.client.write('m0m1')
    await until(() => front.stats().droppedNoKey === 2, 5000, 'both dropped')
  })
})

describe('rules.httpRoute', () => {
  it('routes by Host without port and path prefix, one client on one upstream connection', async () => {
    const engine = newEngine()
    const [src, a1, a2, web] = await connections(engine, 4, clients)
    const api = engine.sockHash({ maxEntries: 8 })
    api.set('a1', a1!.sock, { server: 'api' })
    api.set('a2', a2!.sock, { server: 'api' })
    const statics = engine.sockHash({ maxEntries: 8 })
    statics.set('w', web!.sock)
    const got = recorders([a1!, a2!, web!])
    const front = soloMap(engine, src!.sock, {
      parser: parsers.http1(),
      verdict: rules.httpRoute([
        { host: 'api.example', pathPrefix: '/v1/', pool: api },
        { pathPrefix: '/static/', pool: statics },
      ]),
    })
    const r1 = 'GET /v1/users HTTP/1.1\r\nHost: API.Example:8080\r\n\r\n'
    const r2 = 'GET /static/a.css HTTP/1.1\r\nHost: other.example\r\n\r\n'
    const r3 = 'POST /v1/items HTTP/1.1\r\nHost: api.example\r\nContent-Length: 5\r\n\r\nhello'
    const miss = 'GET /v2/x HTTP/1.1\r\nHost: api.example\r\n\r\n'
    const noHost = 'GET /v1/users HTTP/1.1\r\n\r\n'
    src!.client.write(r1 + r2 + miss + r3 + noHost)
    const routed = r1.length + r2.length + r3.length
    await until(() => total(got) === routed && front.stats().droppedNoRoute === 2, 5000, 'routed and dropped')
    const [g1, g2, gw] = got.map((b) => b.toString())
    // Both API requests on one of the two connections of server 'api'.
    expect([g1, g2].sort()).toEqual(['', r1 + r3])
    expect(gw).toBe(r2)
    await acknowledged(src!.sock)
    const st = front.stats()
    expect([st.messagesIn, st.redirectedEgress, st.droppedNoRoute]).toEqual([5, 3, 2])
  })

  it('validates its routes', () => {
    const engine = newEngine()
    const pool = engine.sockHash({ maxEntries: 1 })
    expect(() => rules.httpRoute([])).toThrow(TypeError)
    expect(() => rules.httpRoute([{ pool: 3 as unknown as SockHash }])).toThrow(TypeError)
    expect(() => rules.httpRoute([{ host: 'a.example:80', pool }])).toThrow(RangeError)
    expect(() => rules.httpRoute([{ host: '', pool }])).toThrow(RangeError)
    expect(() => rules.httpRoute([{ host: 7 as unknown as string, pool }])).toThrow(TypeError)
    expect(() => rules.httpRoute([{ host: '[::1]', pathPrefix: '/', pool }])).not.toThrow()
  })
})

describe('hashRoute options and set({ server, weight })', () => {
  it('validates them', async () => {
    const engine = newEngine()
    const [a] = await connections(engine, 1, clients)
    const pool = engine.sockHash({ maxEntries: 4 })
    expect(() => pool.set('k', a!.sock, { weight: 0 })).toThrow(RangeError)
    expect(() => pool.set('k', a!.sock, { weight: 1.5 })).toThrow(RangeError)
    expect(() => pool.set('k', a!.sock, { server: '' })).toThrow(RangeError)
    expect(() => pool.set('k', a!.sock, { server: 5 as unknown as string })).toThrow(TypeError)
    expect(codeOf(() => pool.set('k', a!.sock, { server: 's', weight: 3 }))).toBeUndefined()
    expect(pool.get('k')).toBe(a!.sock)
    expect(() => rules.hashRoute(pool, rules.key.resp, { hashTag: '{' })).toThrow(RangeError)
    expect(() => rules.hashRoute(pool, rules.key.resp, { hashTag: '{}' })).not.toThrow()
  })
})

// ── Compatibility with twemproxy ─────────────────────────────────────────────────────────────────────────────────

const needed = ['redis-server', 'nutcracker']
const missing = missingPrograms(needed)

/** A child process, killed (by its own pid) after the file's tests. */
const children: ChildProcess[] = []
let scratch: string | undefined
afterAll(async () => {
  for (const c of children.splice(0)) {
    if (c.exitCode === null) {
      c.kill('SIGKILL')
      await deadline(once(c, 'exit'), 5000, 'child exit')
    }
  }
  if (scratch) rmSync(scratch, { recursive: true, force: true })
})

function start(program: string, args: string[]): ChildProcess {
  const c = spawn(programPath(program)!, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  c.stderr!.on('data', (d: Buffer) => (err += d.toString()))
  c.on('exit', (code) => {
    if (code !== null && code !== 0) console.error(`${program} exited with ${code}: ${err}`)
  })
  children.push(c)
  return c
}

/** Sends `payload` to `port` and reads `replyBytes` bytes of replies. */
async function exchange(port: number, payload: string, replyBytes: number): Promise<Buffer> {
  const s = net.connect({ host: '127.0.0.1', port })
  await deadline(once(s, 'connect'), 5000, `connect ${port}`)
  const reply = readN(s, replyBytes, 20_000)
  s.write(payload)
  try {
    return await reply
  } finally {
    s.destroy()
  }
}

/** The keys of the test: plain, hash-tagged, and some with bytes >= 0x80 (twemproxy hashes them as signed chars). */
function keysOf(prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => {
    if (i % 5 === 0) return `${prefix}user:{${i % 37}}:k${i}`
    if (i % 7 === 0) return `${prefix}clé:${i}`
    return `${prefix}key:${i}`
  })
}

describe.skipIf(missing.length > 0)(`hashRoute places keys as twemproxy (needs ${needed.join(', ')})`, () => {
  it('sends 2,000 keys to the server nutcracker sends them to, with weights and hash tags', async () => {
    scratch = mkdtempSync(join(tmpdir(), 'sockmap-ketama-'))
    const ports = await freePorts(6)
    const redisPorts = ports.slice(0, 3)
    for (const p of redisPorts) {
      start('redis-server', ['--port', `${p}`, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'])
    }
    const [evenPort, weightedPort, statsPort] = ports.slice(3) as [number, number, number]
    const weights = [1, 2, 3]
    const pool = (listen: number, w: (i: number) => number): string =>
      [
        `  listen: 127.0.0.1:${listen}`,
        '  hash: fnv1a_64',
        '  hash_tag: "{}"',
        '  distribution: ketama',
        '  redis: true',
        '  auto_eject_hosts: false',
        '  servers:',
        ...redisPorts.map((p, i) => `   - 127.0.0.1:${p}:${w(i)}`),
      ].join('\n')
    const conf = join(scratch, 'nutcracker.yml')
    writeFileSync(conf, `even:\n${pool(evenPort, () => 1)}\nweighted:\n${pool(weightedPort, (i) => weights[i]!)}\n`)
    start('nutcracker', ['-c', conf, '-s', `${statsPort}`, '-o', join(scratch, 'nutcracker.log')])
    for (const p of [...redisPorts, evenPort, weightedPort]) await untilListening(p, 10_000, 'redis/nutcracker')

    const cases = [
      { port: evenPort, keys: keysOf('e:', 2000), weight: () => 1 },
      { port: weightedPort, keys: keysOf('w:', 2000), weight: (i: number) => weights[i]! },
    ]
    // Through nutcracker: SET every key, then ask each server which keys it holds.
    for (const c of cases) {
      const sets = c.keys.map((k) => respCommand('SET', k, 'v')).join('')
      expect((await exchange(c.port, sets, 5 * c.keys.length)).toString()).toBe('+OK\r\n'.repeat(c.keys.length))
    }
    const all = cases.flatMap((c) => c.keys)
    const holds = await Promise.all(
      redisPorts.map(async (p) => {
        const replies = await exchange(p, all.map((k) => respCommand('EXISTS', k)).join(''), 4 * all.length)
        return replies.toString().split('\r\n').slice(0, -1)
      }),
    )
    const twemproxyOwner = new Map<string, number>()
    all.forEach((k, i) => {
      const owners = holds.flatMap((h, s) => (h[i] === ':1' ? [s] : []))
      expect(owners.length, `owners of ${k}`).toBe(1)
      twemproxyOwner.set(k, owners[0]!)
    })

    // Through sockmap: three sockets stand for the servers, named as nutcracker names them.
    for (const c of cases) {
      const engine = newEngine()
      const [src, ...servers] = await connections(engine, 4, clients)
      const ring = engine.sockHash({ maxEntries: 8 })
      servers.forEach((s, i) =>
        ring.set(`s${i}`, s.sock as Socket, { server: `127.0.0.1:${redisPorts[i]}`, weight: c.weight(i) }),
      )
      const got = recorders(servers)
      soloMap(engine, src!.sock, {
        parser: parsers.resp(),
        verdict: rules.hashRoute(ring, rules.key.resp, { hashTag: '{}' }),
      })
      const sets = c.keys.map((k) => respCommand('SET', k, 'v')).join('')
      src!.client.write(sets)
      await until(() => total(got) === Buffer.byteLength(sets), 20_000, 'every SET at a server')
      const sockmapOwner = new Map<string, number>()
      got.forEach((b, s) => respKeys(b).forEach((k) => sockmapOwner.set(k, s)))
      expect(sockmapOwner.size).toBe(c.keys.length)
      const differ = c.keys.filter((k) => sockmapOwner.get(k) !== twemproxyOwner.get(k))
      expect(differ).toEqual([])
      // Every server took a share (how big depends on the servers' names, which hold random ports).
      const shares = [0, 1, 2].map((s) => c.keys.filter((k) => sockmapOwner.get(k) === s).length)
      expect(Math.min(...shares)).toBeGreaterThan(0)
    }
  }, 60_000)
})
