// Request/response pairing through TypeScript: clients of a map attached with `requests` get exactly one reply per
// request, in their request order, from real redis-server upstreams (native rule and TypeScript verdict, pipelined,
// several clients multiplexed onto one connection per upstream) and from two node:http servers (keep-alive,
// pipelined, HEAD and chunked responses); a dead upstream answers with the exact error replies; a request passed to
// the application is answered by its send(); the `requests` option's errors.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { afterAll, describe, expect, it } from 'vitest'

import { Verdict, parsers, rules, type Engine, type SockHash, type Socket, type VerdictFunction } from '../src/index'
import { connections, deadline, engineScope, missingPrograms, readN, until } from './helpers'

const { newEngine, clients } = engineScope()
const noRedis = missingPrograms(['redis-server', 'redis-cli']).length > 0

const dir = mkdtempSync(join(tmpdir(), 'sockmap-exchange-'))
const redises: ChildProcess[] = []
afterAll(() => {
  for (const r of redises) r.kill('SIGKILL')
  rmSync(dir, { recursive: true, force: true })
})

/** A redis-server on a Unix socket of its own (no TCP port), ready for connections. */
async function redis(name: string): Promise<{ path: string; proc: ChildProcess }> {
  const path = join(dir, `${name}.sock`)
  const proc = spawn('redis-server', ['--port', '0', '--unixsocket', path, '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  })
  redises.push(proc)
  let up = false
  await until(
    () => {
      const c = net.connect(path)
      c.on('connect', () => {
        up = true
        c.destroy()
      })
      c.on('error', () => {})
      return up
    },
    5000,
    `${name} listening`,
  )
  return { path, proc }
}

/** A RESP command of bulk strings. */
function cmd(...args: string[]): string {
  return `*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')
}

function bulk(v: string): string {
  return `$${Buffer.byteLength(v)}\r\n${v}\r\n`
}

/** The maps of a gateway: clients in requests mode, upstreams answering them. */
function gatewayMaps(
  engine: Engine,
  parser: 'resp' | 'http1',
  verdict: VerdictFunction,
): { clientsMap: SockHash; ups: SockHash } {
  const ups = engine.sockHash({ maxEntries: 64 })
  const clientsMap = engine.sockHash({ maxEntries: 64 })
  ups.attach({
    parser: parser === 'resp' ? parsers.resp() : parsers.http1({ role: 'response' }),
    verdict: rules.reply(),
  })
  clientsMap.attach({ parser: parser === 'resp' ? parsers.resp() : parsers.http1(), verdict, requests: {} })
  return { clientsMap, ups }
}

describe.skipIf(noRedis)('pairing with redis-server upstreams', () => {
  it('multiplexes pipelined clients onto one connection per server, replies exact and in order (native rule)', async () => {
    const [a, b] = await Promise.all([redis('a'), redis('b')])
    const engine = newEngine({ shards: 1 })
    const ups = engine.sockHash({ maxEntries: 8 })
    ups.attach({ parser: parsers.resp(), verdict: rules.reply() })
    const clientsMap = engine.sockHash({ maxEntries: 64 })
    clientsMap.attach({ parser: parsers.resp(), verdict: rules.hashRoute(ups, rules.key.resp), requests: {} })
    ups.set('a', await engine.connect({ path: a.path }))
    ups.set('b', await engine.connect({ path: b.path }))
    const conns = await connections(engine, 10, clients)
    for (const { sock } of conns) clientsMap.set(sock.id, sock)
    const want: string[] = []
    for (const [i, { client }] of conns.entries()) {
      let req = ''
      let rep = ''
      for (let j = 0; j < 50; j++) {
        const key = `k${i}-${j}`
        req += cmd('SET', key, `v${i}.${j}`) + cmd('GET', key) + cmd('GET', `${key}-missing`)
        rep += '+OK\r\n' + bulk(`v${i}.${j}`) + '$-1\r\n'
      }
      client.write(req)
      want.push(rep)
    }
    for (const [i, { client }] of conns.entries()) {
      expect((await readN(client, Buffer.byteLength(want[i]!))).toString()).toBe(want[i])
    }
    const s = conns[0]!.sock.stats()
    expect([s.requests, s.replies, s.errorReplies, s.pendingRequests]).toEqual([150, 150, 0, 0])
    expect(ups.size).toBe(2)
  })

  it('answers in order from a TypeScript verdict, the application, and an upstream that dies', async () => {
    const [a, b] = await Promise.all([redis('ta'), redis('tb')])
    const engine = newEngine()
    const { clientsMap, ups } = gatewayMaps(engine, 'resp', (msg) => {
      if (msg.resp?.command.toUpperCase() === 'PING') return Verdict.PASS
      const key = msg.resp?.key ?? ''
      return msg.redirect(ups, `${msg.socket}-${key.startsWith('b') ? 'b' : 'a'}`)
    })
    const [{ client, sock }] = (await connections(engine, 1, clients)) as [{ client: net.Socket; sock: Socket }]
    const upA = await engine.connect({ path: a.path, near: sock })
    const upB = await engine.connect({ path: b.path, near: sock })
    ups.set(`${sock.id}-a`, upA)
    ups.set(`${sock.id}-b`, upB)
    sock.on('message', (m: Buffer) => {
      if (m.toString().includes('PING')) void sock.send('+PONG\r\n')
    })
    clientsMap.set(sock.id, sock)
    // b blocks on BLPOP; a answers around it; then b dies with the BLPOP pending.
    client.write(cmd('SET', 'a1', 'x') + cmd('BLPOP', 'bq', '0') + cmd('PING') + cmd('GET', 'a1'))
    const first = '+OK\r\n'
    expect((await readN(client, first.length)).toString()).toBe(first)
    await until(() => upA.stats().pendingRequests === 0 && sock.stats().pendingRequests === 3, 5000, 'a answered')
    b.proc.kill('SIGKILL')
    const rest = '-ERR sockmap: upstream closed\r\n+PONG\r\n' + bulk('x')
    expect((await readN(client, rest.length)).toString()).toBe(rest)
    await until(() => upB.closed, 5000, 'the dead upstream closed')
    client.write(cmd('GET', 'b2'))
    const none = '-ERR sockmap: no upstream\r\n'
    expect((await readN(client, none.length)).toString()).toBe(none)
    const s = sock.stats()
    expect([s.requests, s.replies, s.localReplies, s.errorUpstreamClosed, s.errorNoUpstream]).toEqual([5, 2, 1, 1, 1])
  })
})

describe.skipIf(noRedis)('msg.reply() and msg.route() in requests mode', () => {
  it('answers locally and routes by the ring, in request order', async () => {
    const [a, b] = await Promise.all([redis('ra'), redis('rb')])
    const engine = newEngine()
    const { clientsMap, ups } = gatewayMaps(engine, 'resp', (msg) => {
      const command = msg.resp?.command.toUpperCase()
      if (command === 'PING') return msg.reply('+PONG\r\n')
      if (command === 'ECHO') return msg.reply(Buffer.from(`+${msg.resp?.key ?? ''}\r\n`))
      return msg.route(ups)
    })
    const [{ client, sock }] = (await connections(engine, 1, clients)) as [{ client: net.Socket; sock: Socket }]
    ups.set('a', await engine.connect({ path: a.path, near: sock }))
    ups.set('b', await engine.connect({ path: b.path, near: sock }))
    clientsMap.set(sock.id, sock)
    const keys = Array.from({ length: 20 }, (_, i) => `key${i}`)
    client.write(
      keys.map((k) => cmd('SET', k, `v${k}`)).join('') +
        cmd('PING') +
        keys.map((k) => cmd('GET', k)).join('') +
        cmd('ECHO', 'hi') +
        cmd('DBSIZE'),
    )
    const want =
      '+OK\r\n'.repeat(20) +
      '+PONG\r\n' +
      keys.map((k) => bulk(`v${k}`)).join('') +
      '+hi\r\n' +
      '-ERR sockmap: no upstream\r\n'
    expect((await readN(client, Buffer.byteLength(want))).toString()).toBe(want)
    const dbsize = (path: string): number => Number(execFileSync('redis-cli', ['-s', path, 'dbsize']).toString())
    expect(dbsize(a.path) + dbsize(b.path)).toBe(20)
    expect(Math.min(dbsize(a.path), dbsize(b.path))).toBeGreaterThan(0)
    const s = sock.stats()
    expect([s.requests, s.replies, s.localReplies, s.errorNoUpstream]).toEqual([43, 40, 2, 1])
  })
})

describe.skipIf(noRedis)('the Redis planner in pairing', () => {
  it('answers locally, refuses, checks AUTH, and splits multi-key commands over two servers', async () => {
    const [a, b] = await Promise.all([redis('pa'), redis('pb')])
    const engine = newEngine()
    const ups = engine.sockHash({ maxEntries: 8 })
    ups.attach({ parser: parsers.resp(), verdict: rules.reply() })
    const clientsMap = engine.sockHash({ maxEntries: 8 })
    clientsMap.attach({
      parser: parsers.resp(),
      verdict: rules.hashRoute(ups, rules.key.resp),
      requests: { redis: { password: 'pw' } },
    })
    const [{ client, sock }] = (await connections(engine, 1, clients)) as [{ client: net.Socket; sock: Socket }]
    ups.set('a', await engine.connect({ path: a.path, near: sock }))
    ups.set('b', await engine.connect({ path: b.path, near: sock }))
    clientsMap.set(sock.id, sock)
    const keys = Array.from({ length: 20 }, (_, i) => `key${i}`)
    client.write(
      cmd('GET', 'key0') +
        cmd('AUTH', 'wrong') +
        cmd('AUTH', 'pw') +
        cmd('PING') +
        cmd('MSET', ...keys.flatMap((k) => [k, `v-${k}`])) +
        cmd('MGET', ...keys.slice(0, 10), 'none') +
        cmd('DEL', ...keys.slice(0, 5)) +
        cmd('EXISTS', ...keys) +
        cmd('KEYS', '*') +
        cmd('GET', 'key7'),
    )
    const want =
      '-NOAUTH Authentication required.\r\n' +
      '-WRONGPASS invalid username-password pair or user is disabled.\r\n' +
      '+OK\r\n' +
      '+PONG\r\n' +
      '+OK\r\n' +
      `*11\r\n${keys
        .slice(0, 10)
        .map((k) => bulk(`v-${k}`))
        .join('')}$-1\r\n` +
      ':5\r\n' +
      ':15\r\n' +
      "-ERR sockmap: 'keys' is not supported by the sharding gateway\r\n" +
      bulk('v-key7')
    expect((await readN(client, Buffer.byteLength(want))).toString()).toBe(want)
    // The keys were spread over both servers.
    const dbsize = (path: string): number => Number(execFileSync('redis-cli', ['-s', path, 'dbsize']).toString())
    const [na, nb] = [dbsize(a.path), dbsize(b.path)]
    expect(na + nb).toBe(15)
    expect(Math.min(na, nb)).toBeGreaterThan(0)
    const s = sock.stats()
    expect([s.requests, s.localReplies, s.errorDenied, s.pendingRequests]).toEqual([10, 2, 3, 0])
  })
})

interface Response {
  status: number
  body: string
  raw: string
}

/** Reads `methods.length` HTTP/1 responses from `sock` (a HEAD's has no body), with a deadline. */
function responses(sock: net.Socket, methods: string[], ms = 5000): Promise<Response[]> {
  let buf = Buffer.alloc(0)
  const out: Response[] = []
  return deadline(
    new Promise((resolve, reject) => {
      const parse = (): void => {
        while (out.length < methods.length) {
          const end = buf.indexOf('\r\n\r\n')
          if (end < 0) return
          const head = buf.subarray(0, end).toString('latin1')
          const status = Number(head.slice(9, 12))
          const headers = new Map(
            head
              .split('\r\n')
              .slice(1)
              .map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
          )
          let at = end + 4
          let body = ''
          if (methods[out.length] !== 'HEAD') {
            if (headers.get('transfer-encoding') === 'chunked') {
              for (;;) {
                const lineEnd = buf.indexOf('\r\n', at)
                if (lineEnd < 0) return
                const size = parseInt(buf.subarray(at, lineEnd).toString(), 16)
                if (buf.length < lineEnd + 2 + size + 2) return
                body += buf.subarray(lineEnd + 2, lineEnd + 2 + size).toString()
                at = lineEnd + 2 + size + 2
                if (size === 0) break
              }
            } else {
              const len = Number(headers.get('content-length') ?? 0)
              if (buf.length < at + len) return
              body = buf.subarray(at, at + len).toString()
              at += len
            }
          }
          out.push({ status, body, raw: buf.subarray(0, at).toString('latin1') })
          buf = buf.subarray(at)
        }
        sock.off('data', onData)
        resolve(out)
      }
      const onData = (d: Buffer): void => {
        buf = Buffer.concat([buf, d])
        try {
          parse()
        } catch (e) {
          reject(e as Error)
        }
      }
      sock.on('data', onData)
    }),
    ms,
    `${methods.length} responses`,
  )
}

/** A keep-alive node:http server answering `<name>:<method> <url>`; `/slow` waits, `/chunked` streams, `/die` resets. */
async function httpServer(name: string): Promise<{ srv: http.Server; port: number }> {
  const srv = http.createServer((req, res) => {
    const body = `${name}:${req.method} ${req.url}`
    if (req.url?.endsWith('/die')) return req.socket.destroy()
    if (req.url?.endsWith('/chunked')) {
      res.write(`${name}-part1,`)
      setImmediate(() => res.end('part2'))
      return
    }
    if (req.url?.endsWith('/slow')) return void setTimeout(() => res.end(body), 150)
    res.end(body)
  })
  srv.listen(0, '127.0.0.1')
  await deadline(once(srv, 'listening'), 5000, 'http listen')
  return { srv, port: (srv.address() as net.AddressInfo).port }
}

describe('pairing with node:http upstreams', () => {
  it('carries pipelined keep-alive requests to two servers, HEAD and chunked included, with 502 and 503', async () => {
    const [a, b] = await Promise.all([httpServer('A'), httpServer('B')])
    const engine = newEngine()
    const { clientsMap, ups } = gatewayMaps(engine, 'http1', (msg) =>
      msg.redirect(ups, `${msg.socket}-${msg.http?.path.startsWith('/b') ? 'b' : 'a'}`),
    )
    const [{ client, sock }] = (await connections(engine, 1, clients)) as [{ client: net.Socket; sock: Socket }]
    const upA = await engine.connect({ port: a.port, near: sock })
    const upB = await engine.connect({ port: b.port, near: sock })
    ups.set(`${sock.id}-a`, upA)
    ups.set(`${sock.id}-b`, upB)
    clientsMap.set(sock.id, sock)
    const req = (method: string, path: string): string => `${method} ${path} HTTP/1.1\r\nHost: gw\r\n\r\n`
    const methods = ['GET', 'HEAD', 'GET', 'GET', 'POST']
    const got = responses(client, methods)
    client.write(
      req('GET', '/a/slow') +
        req('HEAD', '/b/head') +
        req('GET', '/b/chunked') +
        req('GET', '/a/1') +
        'POST /b/post HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello',
    )
    expect((await got).map((r) => [r.status, r.body])).toEqual([
      [200, 'A:GET /a/slow'],
      [200, ''],
      [200, 'B-part1,part2'],
      [200, 'A:GET /a/1'],
      [200, 'B:POST /b/post'],
    ])
    const dead = responses(client, ['GET', 'GET'])
    client.write(req('GET', '/b/die') + req('GET', '/a/2'))
    const [bad, ok] = await dead
    expect(bad!.raw).toBe(
      'HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: 25\r\n\r\nsockmap: upstream closed\n',
    )
    expect(ok!.body).toBe('A:GET /a/2')
    await until(() => upB.closed, 5000, 'the reset upstream closed')
    const none = responses(client, ['GET'])
    client.write(req('GET', '/b/3'))
    expect((await none)[0]!.raw).toBe(
      'HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 21\r\n\r\nsockmap: no upstream\n',
    )
    const s = sock.stats()
    expect([s.requests, s.replies, s.errorUpstreamClosed, s.errorNoUpstream]).toEqual([8, 6, 1, 1])
    a.srv.close()
    b.srv.close()
  })
})

describe('msg.reply() without requests', () => {
  it('writes the reply out of the source socket instead of the message', async () => {
    const engine = newEngine()
    const m = engine.sockHash({ maxEntries: 4 })
    m.attach({ parser: parsers.lines(), verdict: (msg) => msg.reply(`got ${msg.length} bytes\n`) })
    const [{ client, sock }] = (await connections(engine, 1, clients)) as [{ client: net.Socket; sock: Socket }]
    m.set(sock.id, sock)
    client.write('hello\nworld!\n')
    const want = 'got 5 bytes\ngot 6 bytes\n'
    expect((await readN(client, want.length)).toString()).toBe(want)
    await until(() => sock.stats().localReplies === 2, 5000, 'two local replies')
  })
})

describe('the requests option', () => {
  it('refuses bad values, naming the option', () => {
    const engine = newEngine()
    const m = engine.sockHash({ maxEntries: 4 })
    expect(() => m.attach({ requests: 5 as never })).toThrow(TypeError)
    expect(() => m.attach({ requests: 5 as never })).toThrow(/options\.requests must be an object/)
    expect(() => m.attach({ requests: { timeoutMs: 0 } })).toThrow(RangeError)
    expect(() => m.attach({ requests: { timeoutMs: 0 } })).toThrow(/options\.requests\.timeoutMs/)
    expect(() => m.attach({ requests: { maxPending: 1.5 } })).toThrow(/options\.requests\.maxPending/)
    expect(() => m.attach({ requests: { maxPending: 1.5 } })).toThrow(RangeError)
  })
})
