import { describe, expect, it } from 'vitest'

import { Verdict, parsers, type HttpMeta, type RespMeta, type StreamMessage } from '../src/index'
import { collect, engineScope } from './helpers'

const { soloSocket } = engineScope()

/** What a verdict saw of one message's RESP metadata (copied out of the reused views). */
function respOf(msg: StreamMessage): unknown {
  const r = msg.resp
  return r === undefined ? null : [r.command, r.key ?? null, r.keyBytes?.toString('hex') ?? null]
}

/** What a verdict saw of one message's HTTP metadata. */
function httpOf(msg: StreamMessage): unknown {
  const h = msg.http
  if (h === undefined) return null
  return [h.method, h.path, h.host ?? null, h.header('connection') ?? null, h.header('upgrade') ?? null]
}

describe('protocol metadata in TypeScript verdicts', () => {
  it('RESP: command and first key of pipelined array and inline commands, as the native framer finds them', async () => {
    const seen: unknown[] = []
    const { a } = await soloSocket({
      parser: parsers.resp(),
      verdict: (msg) => {
        seen.push(respOf(msg))
        return Verdict.PASS
      },
    })
    const key = Buffer.from('clé:1') // UTF-8, 6 bytes
    const messages = [
      '*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n',
      '*1\r\n$4\r\nPING\r\n', // no key
      'set mykey 1\r\n', // inline
      `*3\r\n$3\r\nDEL\r\n$${key.length}\r\n${key.toString('latin1')}\r\n$1\r\nx\r\n`,
      '+OK\r\n', // a reply: no request metadata
      'PING\r\n', // inline, no key
    ]
    const got = collect(a!.sock, messages.length)
    a!.client.write(Buffer.from(messages.join(''), 'latin1')) // pipelined in one write
    expect(await got).toEqual(messages)
    expect(seen).toEqual([
      ['GET', 'foo', Buffer.from('foo').toString('hex')],
      ['PING', null, null],
      ['set', 'mykey', Buffer.from('mykey').toString('hex')],
      ['DEL', 'clé:1', key.toString('hex')],
      null,
      ['PING', null, null],
    ])
  })

  it('RESP: a key past peekBytes is undefined, the command still there; a command past it has no metadata', async () => {
    const seen: unknown[] = []
    const { a } = await soloSocket({
      parser: parsers.resp(),
      peekBytes: 16,
      verdict: (msg) => {
        seen.push(respOf(msg))
        return Verdict.PASS
      },
    })
    const messages = [
      '*2\r\n$3\r\nGET\r\n$10\r\n0123456789\r\n', // key at [17, 27): past 16
      '*2\r\n$3\r\nGET\r\n$1\r\nk\r\n', // key at [17, 18): past 16
      '*1\r\n$20\r\nAAAAAAAAAAAAAAAAAAAA\r\n', // command at [9, 29): past 16
      '*2\r\n$1\r\nX\r\n$1\r\nb\r\n', // command at [8, 9), key at [15, 16): both within 16
    ]
    const got = collect(a!.sock, messages.length)
    a!.client.write(messages.join(''))
    expect(await got).toEqual(messages)
    expect(seen).toEqual([['GET', null, null], ['GET', null, null], null, ['X', 'b', '62']])
  })

  it('HTTP/1: method, path, Host and any header of pipelined, chunked and Upgrade requests', async () => {
    const seen: unknown[] = []
    const { a } = await soloSocket({
      parser: parsers.http1(),
      verdict: (msg) => {
        seen.push(httpOf(msg))
        return Verdict.PASS
      },
    })
    const messages = [
      'GET /a?q=1 HTTP/1.1\r\nHost: a.example\r\nX-Two: 1\r\nx-two:  2 \r\n\r\n',
      'POST /up HTTP/1.1\r\nhost: b.example:8080\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n' +
        '5\r\nhello\r\n0\r\n\r\n',
      'PUT /n HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc', // no Host
      'GET /ws HTTP/1.1\r\nHost: c.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
    ]
    const got = collect(a!.sock, messages.length)
    a!.client.write(messages.join(''))
    expect(await got).toEqual(messages)
    expect(seen).toEqual([
      ['GET', '/a?q=1', 'a.example', null, null],
      ['POST', '/up', 'b.example:8080', 'keep-alive', null],
      ['PUT', '/n', null, null, null],
      ['GET', '/ws', 'c.example', 'Upgrade', 'websocket'],
    ])
  })

  it('HTTP/1: header() joins repeated headers; fields past peekBytes are undefined', async () => {
    const headers: unknown[] = []
    const { a } = await soloSocket({
      parser: parsers.http1(),
      peekBytes: 24,
      verdict: (msg) => {
        const h = msg.http
        headers.push(h === undefined ? null : [h.method, h.path, h.host ?? null, h.header('host') ?? null])
        return Verdict.PASS
      },
    })
    const messages = [
      'GET /x HTTP/1.1\r\nHost: h\r\n\r\n', // Host's value at [23, 24): within 24
      'GET /y HTTP/1.1\r\nHost: hh\r\n\r\n', // Host's value at [23, 25): past 24
      `GET /${'p'.repeat(30)} HTTP/1.1\r\n\r\n`, // the path past 24: no metadata
    ]
    const got = collect(a!.sock, messages.length)
    a!.client.write(messages.join(''))
    expect(await got).toEqual(messages)
    // The head's Host line is cut by peekBytes in both, so header() finds nothing; `host` comes from the framer.
    expect(headers).toEqual([['GET', '/x', 'h', null], ['GET', '/y', null, null], null])
  })

  it('the metadata views are reused: reading them creates no object per message', async () => {
    const resp = new Set<RespMeta>()
    const http = new Set<HttpMeta | undefined>()
    let n = 0
    const { a } = await soloSocket(
      {
        parser: parsers.resp(),
        verdict: (msg) => {
          n++
          if (msg.resp !== undefined) resp.add(msg.resp)
          http.add(msg.http)
          return Verdict.PASS
        },
      },
      { batch: { maxMessages: 8 } },
    )
    const one = '*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n'
    const got = collect(a!.sock, 100)
    a!.client.write(one.repeat(100))
    expect((await got).length).toBe(100)
    expect(n).toBe(100)
    expect(resp.size).toBe(1)
    expect([...http]).toEqual([undefined])
  })
})
