// The HTTP/1 router with Node's http client, raw pipelined requests and autocannon against real Node http servers:
// routing by Host and path prefix, keep-alive, pipelining in order, chunked bodies both ways, 502 on an upstream that
// dies mid-request, 503 with no upstream up, and an Upgrade handed to the application.
import http from 'node:http'
import net from 'node:net'

import autocannon from 'autocannon'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { HttpRouter } from '../src/index'
import { deadline, portOf, readN, until } from './helpers'

/** A Node http server that answers `name method url bodyLength` (chunked for /chunked, dies on /die). */
async function backend(name: string): Promise<http.Server> {
  const srv = http.createServer((req, res) => {
    let body = 0
    req.on('data', (d: Buffer) => (body += d.length))
    req.on('end', () => {
      if (req.url === '/die') {
        req.socket.destroy()
        return
      }
      const text = `${name} ${req.method} ${req.url} ${body}`
      if (req.url?.startsWith('/chunked')) {
        res.writeHead(200, { 'content-type': 'text/plain' })
        res.write(text)
        res.write(' part2')
        res.end(' end')
        return
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text) })
      res.end(text)
    })
  })
  srv.keepAliveTimeout = 30_000
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  return srv
}

function get(port: number, path: string, agent: http.Agent, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; body: string; reused: boolean }>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent, headers }, (res) => {
      let body = ''
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, reused: req.reusedSocket }))
    })
    req.on('error', reject)
  })
}

describe('HttpRouter (real Node http servers)', () => {
  let api: http.Server
  let web: http.Server
  let other: http.Server
  let router: HttpRouter
  let port: number
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })

  beforeAll(async () => {
    ;[api, web, other] = await Promise.all([backend('api'), backend('web'), backend('other')])
    router = new HttpRouter({
      listen: '127.0.0.1:0',
      routes: [
        { host: 'other.example', upstreams: [`127.0.0.1:${portOf(other as unknown as net.Server)}`] },
        { pathPrefix: '/api', upstreams: [`127.0.0.1:${portOf(api as unknown as net.Server)}`] },
        { upstreams: [`127.0.0.1:${portOf(web as unknown as net.Server)}`] },
      ],
      healthCheck: { intervalMs: 50, timeoutMs: 500 },
      failures: 1,
    })
    port = (await router.listen()).port
  })
  afterAll(async () => {
    agent.destroy()
    await router?.close({ drainMs: 100 })
    for (const s of [api, web, other]) s?.close()
  })

  it('routes by Host (without port, any case) and path prefix, keeping the connection alive', async () => {
    const r1 = await get(port, '/api/users', agent)
    const r2 = await get(port, '/index.html', agent)
    const r3 = await get(port, '/api/x', agent, { host: 'OTHER.example:8080' })
    expect([r1.status, r1.body]).toEqual([200, 'api GET /api/users 0'])
    expect([r2.status, r2.body]).toEqual([200, 'web GET /index.html 0'])
    expect([r3.status, r3.body]).toEqual([200, 'other GET /api/x 0'])
    expect([r2.reused, r3.reused]).toEqual([true, true])
    // Three pools, one exposition: each metric typed once, a series per server.
    const metrics = router.metrics()
    expect(metrics.match(/^# TYPE sockmap_upstream_up gauge$/gm)).toHaveLength(1)
    expect(metrics.match(/^sockmap_upstream_up\{pool="http\d",server="[^"]+"\} 1$/gm)).toHaveLength(3)
  })

  it('answers pipelined requests in order, across upstreams, with chunked bodies both ways', async () => {
    const c = net.connect({ host: '127.0.0.1', port })
    await deadline(new Promise((r) => c.once('connect', r)), 5000, 'connect')
    const chunked =
      'POST /api/upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n'
    c.write(
      'GET /api/1 HTTP/1.1\r\nHost: h\r\n\r\n' +
        'GET /2 HTTP/1.1\r\nHost: h\r\n\r\n' +
        chunked +
        'GET /chunked HTTP/1.1\r\nHost: h\r\n\r\n',
    )
    let text = ''
    await deadline(
      new Promise<void>((resolve) => {
        c.on('data', (d) => {
          text += d.toString()
          // The last response is chunked: complete once its last chunk arrived.
          if ((text.match(/HTTP\/1\.1 /g) ?? []).length === 4 && text.endsWith('\r\n0\r\n\r\n')) resolve()
        })
      }),
      5000,
      'four responses',
    )
    const bodies = [...text.matchAll(/\r\n\r\n([^H]*?)(?=HTTP\/1\.1|$)/g)].map((m) => m[1])
    expect(text.match(/HTTP\/1\.1 200 OK/g)).toHaveLength(4)
    expect(bodies[0]).toBe('api GET /api/1 0')
    expect(bodies[1]).toBe('web GET /2 0')
    expect(bodies[2]).toBe('api POST /api/upload 11')
    expect(text).toMatch(/transfer-encoding: chunked\r\n\r\n[0-9a-f]+\r\nweb GET \/chunked 0\r\n/i)
    c.destroy()
  })

  it('answers 502 when the upstream dies mid-request, and the client connection goes on', async () => {
    const c = net.connect({ host: '127.0.0.1', port })
    await deadline(new Promise((r) => c.once('connect', r)), 5000, 'connect')
    c.write('GET /die HTTP/1.1\r\nHost: h\r\n\r\n')
    const head = (await readN(c, 'HTTP/1.1 502'.length)).toString()
    expect(head).toBe('HTTP/1.1 502')
    c.destroy()
    const webName = `127.0.0.1:${portOf(web as unknown as net.Server)}`
    await until(
      () => router.stats().upstreams.some((u) => u.server === webName && u.up && u.ejections === 1),
      5000,
      'web ejected by the close and back after a check',
    )
    expect((await get(port, '/after', agent)).body).toBe('web GET /after 0')
  })

  it('serves a short autocannon run with no errors', async () => {
    const amount = 400
    const result = await autocannon({ url: `http://127.0.0.1:${port}/api/load`, connections: 8, amount })
    expect([result.errors, result.timeouts, result.non2xx, result['2xx']]).toEqual([0, 0, 0, amount])
  })
})

describe('HttpRouter with no upstream up, and upgrades', () => {
  it('answers 503 when every server of the route is down', async () => {
    const dead = net.createServer()
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r))
    const deadPort = portOf(dead)
    await new Promise((r) => dead.close(r))
    const router = new HttpRouter({ listen: '127.0.0.1:0', routes: [{ upstreams: [`127.0.0.1:${deadPort}`] }] })
    const port = (await router.listen()).port
    try {
      const agent = new http.Agent({ keepAlive: false })
      const r = await get(port, '/', agent)
      expect(r.status).toBe(503)
      expect(r.body).toBe('sockmap: no upstream\n')
    } finally {
      await router.close({ drainMs: 0 })
    }
  })

  it('hands an Upgrade request and the rest of its stream to the application', async () => {
    const web = await backend('web')
    const router = new HttpRouter({
      listen: '127.0.0.1:0',
      upgrades: true,
      routes: [{ upstreams: [`127.0.0.1:${portOf(web as unknown as net.Server)}`] }],
    })
    router.on('upgrade', (sock, head) => {
      expect(head.toString()).toMatch(/^GET \/ws HTTP\/1\.1\r\n/)
      void sock.send('HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n')
      sock.on('message', (m) => void sock.send(Buffer.concat([Buffer.from('echo:'), m])))
    })
    const port = (await router.listen()).port
    try {
      const c = net.connect({ host: '127.0.0.1', port })
      await deadline(new Promise((r) => c.once('connect', r)), 5000, 'connect')
      c.write('GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n')
      const head = 'HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n'
      expect((await readN(c, head.length)).toString()).toBe(head)
      c.write('ping')
      expect((await readN(c, 9)).toString()).toBe('echo:ping')
      // A plain request on another connection is still routed.
      const agent = new http.Agent({ keepAlive: false })
      expect((await get(port, '/plain', agent)).body).toBe('web GET /plain 0')
      c.destroy()
    } finally {
      await router.close({ drainMs: 0 })
      web.close()
    }
  })
})
