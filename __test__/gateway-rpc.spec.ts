// RpcRouter and TcpProxy in message mode against real node:net servers: length-prefixed requests routed by a header
// field (the same field always to the same server, both servers used) and newline-delimited requests round-robin,
// each answered in request order.
import net from 'node:net'

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { RpcRouter, TcpProxy } from '../src/index'
import { deadline, frame, netServer, portOf, readN } from './helpers'

/** A server answering each 4-byte length-prefixed frame with the frame `name:payload`. */
function framedServer(name: string): Promise<net.Server> {
  return netServer((s) => {
    let buf = Buffer.alloc(0)
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const len = buf.readUInt32BE(0)
        s.write(frame(`${name}:${buf.subarray(4, 4 + len).toString()}`))
        buf = buf.subarray(4 + len)
      }
    })
  })
}

/** A server answering each line with `name:line`. */
function lineServer(name: string): Promise<net.Server> {
  return netServer((s) => {
    let text = ''
    s.on('data', (d: Buffer) => {
      text += d.toString()
      let nl: number
      while ((nl = text.indexOf('\n')) >= 0) {
        s.write(`${name}:${text.slice(0, nl)}\n`)
        text = text.slice(nl + 1)
      }
    })
  })
}

async function connected(port: number): Promise<net.Socket> {
  const c = net.connect({ host: '127.0.0.1', port })
  await deadline(new Promise((r) => c.once('connect', r)), 5000, 'connect')
  return c
}

/** Reads `n` length-prefixed frames (within a deadline). */
function frames(c: net.Socket, n: number): Promise<string[]> {
  return deadline(
    new Promise<string[]>((resolve) => {
      let buf = Buffer.alloc(0)
      const out: string[] = []
      c.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d])
        while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
          out.push(buf.subarray(4, 4 + buf.readUInt32BE(0)).toString())
          buf = buf.subarray(4 + buf.readUInt32BE(0))
        }
        if (out.length >= n) resolve(out)
      })
    }),
    5000,
    `${n} frames`,
  )
}

describe('RpcRouter and TcpProxy (message mode)', () => {
  const servers: net.Server[] = []
  beforeAll(async () => {
    servers.push(...(await Promise.all([framedServer('a'), framedServer('b'), lineServer('a'), lineServer('b')])))
  })
  afterAll(() => {
    for (const s of servers) s.close()
  })

  it('routes length-prefixed requests by their header field and answers them in order', async () => {
    const [a, b] = servers as [net.Server, net.Server]
    const router = new RpcRouter({
      listen: '127.0.0.1:0',
      upstreams: [`127.0.0.1:${portOf(a)}`, `127.0.0.1:${portOf(b)}`],
      key: { offset: 4, length: 4 }, // the first 4 payload bytes name the entity
    })
    const port = (await router.listen()).port
    try {
      const c = await connected(port)
      const ids = Array.from({ length: 40 }, (_, i) => `${String((i * 7919) % 10000).padStart(4, '0')}`)
      const requests = [...ids, ...ids].map((id, i) => `${id}-req${i}`)
      c.write(Buffer.concat(requests.map((r) => frame(r))))
      const replies = await frames(c, requests.length)
      // In order, each from one server, and the same id always from the same server.
      expect(replies.map((r) => r.slice(2))).toEqual(requests)
      const serverOf = new Map<string, string>()
      replies.forEach((r, i) => {
        const id = requests[i]?.slice(0, 4) as string
        expect(serverOf.get(id) ?? r[0]).toBe(r[0])
        serverOf.set(id, r[0] as string)
      })
      expect(new Set(serverOf.values())).toEqual(new Set(['a', 'b']))
      expect(router.stats().requests.messagesIn).toBe(requests.length)
      c.destroy()
    } finally {
      await router.close({ drainMs: 100 })
    }
  })

  it('round-robins lines over the servers and answers them in order', async () => {
    const [, , a, b] = servers as [net.Server, net.Server, net.Server, net.Server]
    const proxy = new TcpProxy({
      listen: '127.0.0.1:0',
      upstreams: [`127.0.0.1:${portOf(a)}`, `127.0.0.1:${portOf(b)}`],
      protocol: 'lines',
      route: 'round-robin',
    })
    const port = (await proxy.listen()).port
    try {
      const c = await connected(port)
      const lines = Array.from({ length: 10 }, (_, i) => `line${i}`)
      c.write(lines.map((l) => `${l}\n`).join(''))
      const expected = lines.map((l) => `x:${l}\n`).join('')
      const got = (await readN(c, expected.length)).toString().split('\n').slice(0, -1)
      expect(got.map((l) => l.slice(2))).toEqual(lines)
      const names = got.map((l) => l[0])
      expect(names.filter((n) => n === 'a')).toHaveLength(5)
      expect(names.filter((n) => n === 'b')).toHaveLength(5)
      c.destroy()
    } finally {
      await proxy.close({ drainMs: 100 })
    }
  })
})
