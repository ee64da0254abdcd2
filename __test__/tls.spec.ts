// TLS in the engine against real peers (Node's `tls` on loopback): termination, origination, a proxy doing both,
// handshake parameters (versions, ALPN, SNI, resumption, client certificates), failures with their codes and
// counters, and hot reload. Certificates are made with openssl at test time (tls-certs.ts).
import { once } from 'node:events'
import net from 'node:net'
import tls from 'node:tls'

import { describe, expect, it } from 'vitest'

import {
  clientHelloSni,
  parsers,
  rules,
  SockmapError,
  Verdict,
  type Engine,
  type Server,
  type Socket,
} from '../src/index'
import { acknowledged, deadline, engineScope, errorOf, until } from './helpers'
import { hasOpenssl, pki, type TestCert } from './tls-certs'

const run = hasOpenssl() ? describe : describe.skip
if (!hasOpenssl()) console.warn('tls.spec: openssl not found, skipping the TLS tests')

/** Lines of up to 1 MiB, each message keeping its `\n`. */
function keepLines(): ReturnType<typeof parsers.delimiter> {
  return parsers.delimiter({ delimiters: ['\n'], stripDelimiter: false, maxLength: 1 << 20 })
}

/** A TLS server of the engine on loopback with `cert` (default: localhost) whose sockets echo every line. */
async function echoServer(engine: Engine, opts: Record<string, unknown> = {}): Promise<Server> {
  const p = pki()
  const server = await engine.listen({
    host: '127.0.0.1',
    port: 0,
    tls: { cert: p.localhost.cert, key: p.localhost.key, ...opts },
  })
  const peers = engine.sockHash({ maxEntries: 64 })
  peers.attach({ parser: keepLines(), verdict: rules.redirect(peers, rules.key.socket) })
  server.on('connection', (s) => peers.set(s.id, s))
  return server
}

/** A Node TLS client of `server`, connected (secureConnect). */
async function tlsClient(server: Server, opts: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
  const c = tls.connect({
    host: '127.0.0.1',
    port: server.address().port,
    servername: 'localhost',
    ca: pki().ca,
    ...opts,
  })
  await deadline(once(c, 'secureConnect'), 5000, 'secureConnect')
  return c
}

/** A Node TLS server with `cert`; `onConn` gets each secure connection. */
async function nodeTlsServer(
  cert: TestCert,
  onConn: (s: tls.TLSSocket) => void,
  opts: tls.TlsOptions = {},
): Promise<tls.Server & { port: number }> {
  const srv = tls.createServer({ cert: cert.cert, key: cert.key, ...opts }, onConn)
  srv.listen(0, '127.0.0.1')
  await deadline(once(srv, 'listening'), 5000, 'tls listen')
  return Object.assign(srv, { port: (srv.address() as net.AddressInfo).port })
}

/** Text lines a Node socket receives, until `n` arrived. */
function lines(sock: net.Socket | tls.TLSSocket, n: number, ms = 5000): Promise<string[]> {
  let buf = ''
  return deadline(
    new Promise<string[]>((resolve) => {
      sock.on('data', (d: Buffer) => {
        buf += d.toString('latin1')
        const got = buf.split('\n').filter((l) => l.length > 0)
        if ((buf.match(/\n/g) ?? []).length >= n) resolve(got)
      })
    }),
    ms,
    `${n} lines`,
  )
}

run('TLS termination (engine.listen({ tls }))', () => {
  const { newEngine, clients } = engineScope()

  it('terminates TLS 1.3: the parser and verdict see plaintext, the client gets exact bytes back', async () => {
    const engine = newEngine()
    const server = await echoServer(engine)
    const accepted = once(server, 'connection') as Promise<[Socket]>
    const c = await tlsClient(server)
    clients.push(c)
    const [sock] = await deadline(accepted, 5000, 'connection')
    expect(sock.tls).toEqual({ version: 'TLSv1.3', sni: 'localhost', resumed: false, cipher: expect.any(String) })
    const got = lines(c, 3)
    c.write('one\ntwo\n')
    c.write('three\n')
    expect(await got).toEqual(['one', 'two', 'three'])
    expect(c.getProtocol()).toBe('TLSv1.3')
    await until(() => sock.stats().messagesIn === 3, 2000, 'three messages counted')
    expect(sock.stats().bytesIn).toBe(14)
    const st = engine.stats().tls
    expect(st.handshakes).toBe(1)
    expect(st.resumed).toBe(0)
  })

  it('speaks TLS 1.2 and negotiates ALPN', async () => {
    const engine = newEngine()
    const server = await echoServer(engine, { alpn: ['http/1.1', 'h2'] })
    const accepted = once(server, 'connection') as Promise<[Socket]>
    const c = await tlsClient(server, { maxVersion: 'TLSv1.2', ALPNProtocols: ['h2', 'http/1.1'] })
    clients.push(c)
    const [sock] = await deadline(accepted, 5000, 'connection')
    expect(c.getProtocol()).toBe('TLSv1.2')
    expect(c.alpnProtocol).toBe('http/1.1')
    expect(sock.tls?.version).toBe('TLSv1.2')
    expect(sock.tls?.alpn).toBe('http/1.1')
    const got = lines(c, 1)
    c.write('x'.repeat(100_000) + '\n')
    expect((await got)[0]).toBe('x'.repeat(100_000))
  })

  it('picks the certificate by SNI', async () => {
    const engine = newEngine()
    const p = pki()
    const server = await echoServer(engine, { sni: { 'b.test': { cert: p.other.cert, key: p.other.key } } })
    const a = await tlsClient(server)
    const b = await tlsClient(server, { servername: 'b.test' })
    clients.push(a, b)
    expect(a.getPeerCertificate().subject.CN).toBe('localhost')
    expect(b.getPeerCertificate().subject.CN).toBe('b.test')
  })

  it('resumes sessions (TLS 1.3 tickets and TLS 1.2)', async () => {
    const engine = newEngine()
    const server = await echoServer(engine)
    for (const maxVersion of ['TLSv1.3', 'TLSv1.2'] as const) {
      const firstAccepted = once(server, 'connection')
      const first = tls.connect({
        host: '127.0.0.1',
        port: server.address().port,
        servername: 'localhost',
        ca: pki().ca,
        maxVersion,
      })
      clients.push(first)
      const [session] = (await deadline(once(first, 'session'), 5000, 'session')) as [Buffer]
      await deadline(firstAccepted, 5000, 'first connection')
      const accepted = once(server, 'connection') as Promise<[Socket]>
      const second = await tlsClient(server, { session, maxVersion })
      clients.push(second)
      const [sock] = await deadline(accepted, 5000, 'second connection')
      expect(second.isSessionReused()).toBe(true)
      expect(sock.tls?.resumed).toBe(true)
    }
    expect(engine.stats().tls.resumed).toBe(2)
    expect(engine.metrics()).toContain('sockmap_tls_resumed_total 2')
  })

  it('requires a client certificate from the CA when given one', async () => {
    const engine = newEngine()
    const p = pki()
    const server = await echoServer(engine, { ca: p.ca })
    const ok = await tlsClient(server, { cert: p.client.cert, key: p.client.key })
    clients.push(ok)
    const got = lines(ok, 1)
    ok.write('authenticated\n')
    expect(await got).toEqual(['authenticated'])

    const failed = once(server, 'tlsClientError') as Promise<[SockmapError]>
    const anon = tls.connect({ host: '127.0.0.1', port: server.address().port, servername: 'localhost', ca: p.ca })
    clients.push(anon)
    anon.on('error', () => {})
    const [err] = await deadline(failed, 5000, 'tlsClientError')
    expect(err.code).toBe('EPROTO')
    expect(err.message).toMatch(/certificate/)
    expect(engine.stats().tls.failures.certificate).toBe(1)
  })

  it('sends its alert before it closes a failed handshake: the client reads why', async () => {
    const engine = newEngine()
    const p = pki()
    const server = await echoServer(engine, { ca: p.ca })
    server.on('tlsClientError', () => {})
    // The client sent no certificate: rustls answers certificate_required (also in TLS 1.2, where the client
    // hears it in place of the server's Finished).
    for (const maxVersion of ['TLSv1.3', 'TLSv1.2'] as const) {
      const anon = tls.connect({
        host: '127.0.0.1',
        port: server.address().port,
        servername: 'localhost',
        ca: p.ca,
        maxVersion,
      })
      clients.push(anon)
      anon.resume()
      const [err] = (await deadline(once(anon, 'error'), 5000, `${maxVersion} alert`).catch((e: unknown) => [e])) as [
        NodeJS.ErrnoException,
      ]
      expect(err.code).toBe('ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED')
    }
    expect(engine.stats().tls.failures.certificate).toBe(2)
  })

  it('counts per server (server.stats().tls, kept across reloads) and labels the metrics by server', async () => {
    const engine = newEngine()
    const p = pki()
    const a = await echoServer(engine)
    const b = await echoServer(engine, { ca: p.ca })
    b.on('tlsClientError', () => {})
    const plain = await engine.listen({ host: '127.0.0.1', port: 0 })
    clients.push(await tlsClient(a), await tlsClient(a))
    const anon = tls.connect({ host: '127.0.0.1', port: b.address().port, servername: 'localhost', ca: p.ca })
    clients.push(anon)
    anon.on('error', () => {})
    await until(() => b.stats().tls?.failures.certificate === 1, 5000, 'the failure counted on b')
    // In TLS 1.3 a client is connected before the server has read its Finished, which completes the server's side.
    await until(() => a.stats().tls?.handshakes === 2, 5000, 'both handshakes completed on a')
    const none = { certificate: 0, alert: 0, protocol: 0, timeout: 0, closed: 0 }
    a.setSecureContext({ cert: p.other.cert, key: p.other.key })
    expect(a.stats().tls).toEqual({ handshakes: 2, resumed: 0, failures: none })
    expect(b.stats().tls).toEqual({ handshakes: 0, resumed: 0, failures: { ...none, certificate: 1 } })
    expect(plain.stats().tls).toBeUndefined()
    expect(engine.stats().tls.handshakes).toBe(2)
    const m = engine.metrics()
    expect(m).toContain(`sockmap_server_tls_handshakes_total{server="${a.id}"} 2`)
    expect(m).toContain(`sockmap_server_tls_failures_total{server="${b.id}",reason="certificate"} 1`)
    expect(m).toContain(`sockmap_server_tls_resumed_total{server="${b.id}"} 0`)
    expect(m).not.toContain(`{server="${plain.id}"`)
    await a.close()
    expect(a.stats().tls).toBeUndefined()
  })

  it('times out a handshake that does not finish (ETIMEDOUT), other connections unaffected', async () => {
    const engine = newEngine()
    const server = await echoServer(engine, { handshakeTimeoutMs: 150 })
    const failed = once(server, 'tlsClientError') as Promise<[SockmapError]>
    const silent = net.connect({ host: '127.0.0.1', port: server.address().port })
    clients.push(silent)
    const ended = once(silent, 'close')
    const [err] = await deadline(failed, 5000, 'tlsClientError')
    expect(err.code).toBe('ETIMEDOUT')
    await deadline(ended, 5000, 'silent client closed')
    expect(engine.stats().tls.failures.timeout).toBe(1)
    const c = await tlsClient(server)
    clients.push(c)
    const got = lines(c, 1)
    c.write('still here\n')
    expect(await got).toEqual(['still here'])
  })

  it('closes at once, with a handshake under way (engine.close() does not wait for its deadline)', async () => {
    const engine = newEngine()
    const server = await echoServer(engine)
    const silent = net.connect({ host: '127.0.0.1', port: server.address().port })
    clients.push(silent)
    silent.on('error', () => {}) // reset or ended: either way it closes
    await deadline(once(silent, 'connect'), 5000, 'connect')
    // A client announced after it means the silent one was accepted (one listener accepts in order).
    const barrier = await tlsClient(server)
    clients.push(barrier)
    barrier.on('error', () => {}) // the engine's close may reset it
    const closed = new Promise((resolve) => silent.on('close', resolve))
    const started = Date.now()
    await deadline(engine.close(), 3000, 'engine close')
    await deadline(closed, 3000, 'client closed')
    // Not after the shutdown grace (2 s) that sockets still ending get.
    expect(Date.now() - started).toBeLessThan(2000)
  })

  // Bad input in place of a ClientHello: an HTTP request; a record whose header announces more than TLS allows (2^14
  // bytes plus expansion), refused from its header alone, before any of it is buffered; a ClientHello longer than the
  // engine takes.
  const badHellos: Array<[string, Buffer]> = [
    ['garbage instead of a ClientHello', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
    ['a record larger than TLS allows', Buffer.from([0x16, 0x03, 0x01, 0x48, 0x05, 0x01, 0x00, 0x48, 0x01])],
    // A ClientHello of 64 KiB in a full record: rustls refuses it without an alert, the engine sends decode_error.
    [
      'a handshake message longer than the engine takes',
      Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x01, 0x00, 0x00]), Buffer.alloc(0x4000 - 4, 1)]),
    ],
  ]
  it.each(badHellos)('refuses %s (EPROTO, its alert sent), other connections unaffected', async (_, input) => {
    const engine = newEngine()
    const server = await echoServer(engine)
    const good = await tlsClient(server)
    clients.push(good)
    const failed = once(server, 'tlsClientError') as Promise<[SockmapError]>
    const bad = net.connect({ host: '127.0.0.1', port: server.address().port })
    clients.push(bad)
    bad.on('error', () => {})
    const heard: Buffer[] = []
    bad.on('data', (d: Buffer) => heard.push(d))
    const closed = once(bad, 'close')
    bad.write(input)
    const [err] = await deadline(failed, 5000, 'tlsClientError')
    expect(err.code).toBe('EPROTO')
    await deadline(closed, 5000, 'bad client closed')
    // A fatal alert record (level 2) came before the close.
    const alert = Buffer.concat(heard)
    expect([...alert.subarray(0, 6)]).toEqual([0x15, 0x03, alert[2], 0x00, 0x02, 0x02])
    expect(alert.length).toBe(7)
    expect(engine.stats().tls.failures.protocol).toBe(1)
    const got = lines(good, 1)
    good.write('unaffected\n')
    expect(await got).toEqual(['unaffected'])
  })

  it('closes a connection whose peer ends in the middle of a record (ECONNRESET, counted)', async () => {
    const engine = newEngine()
    const server = await echoServer(engine)
    // A TCP relay that, once told to, passes only the first bytes of the client's next record and then ends.
    let cut = false
    const relay = net.createServer((down) => {
      const up = net.connect({ host: '127.0.0.1', port: server.address().port })
      clients.push(down, up)
      up.pipe(down)
      down.on('data', (d: Buffer) => {
        if (!cut) return void up.write(d)
        up.end(d.subarray(0, 8))
      })
      down.on('error', () => {})
      up.on('error', () => {})
    })
    relay.listen(0, '127.0.0.1')
    await once(relay, 'listening')
    const accepted = once(server, 'connection') as Promise<[Socket]>
    const c = tls.connect({
      host: '127.0.0.1',
      port: (relay.address() as net.AddressInfo).port,
      servername: 'localhost',
      ca: pki().ca,
    })
    clients.push(c)
    c.on('error', () => {})
    await deadline(once(c, 'secureConnect'), 5000, 'secureConnect')
    const [sock] = await deadline(accepted, 5000, 'connection')
    const errors: SockmapError[] = []
    sock.on('error', (e) => errors.push(e))
    const closed = new Promise<boolean>((resolve) => sock.on('close', resolve))
    cut = true
    c.write('this record is cut short\n')
    expect(await deadline(closed, 5000, 'socket close')).toBe(true)
    expect(errors.map((e) => e.code)).toEqual(['ECONNRESET'])
    expect(sock.stats().messagesIn).toBe(0)
    expect(engine.stats().tls.failures.closed).toBe(1)
    relay.close()
  })

  it('reloads its certificates (setSecureContext): new connections get the new one', async () => {
    const engine = newEngine()
    const p = pki()
    const server = await echoServer(engine)
    const before = await tlsClient(server)
    clients.push(before)
    server.setSecureContext({ cert: p.other.cert, key: p.other.key })
    const after = await tlsClient(server, { servername: 'b.test' })
    clients.push(after)
    expect(before.getPeerCertificate().subject.CN).toBe('localhost')
    expect(after.getPeerCertificate().subject.CN).toBe('b.test')
    const got = lines(before, 1)
    before.write('old connection keeps working\n')
    expect(await got).toEqual(['old connection keeps working'])
    expect(() => server.setSecureContext({ cert: 'not a pem', key: p.other.key })).toThrow(SockmapError)
  })

  it('checks its options', async () => {
    const engine = newEngine()
    const p = pki()
    await expect(engine.listen({ port: 0, tls: { cert: p.localhost.cert, key: p.other.key } })).rejects.toMatchObject({
      code: 'EINVAL',
    })
    await expect(engine.listen({ port: 0, tls: { cert: 42, key: p.other.key } as never })).rejects.toThrow(TypeError)
    await expect(
      engine.listen({ port: 0, tls: { cert: p.localhost.cert, key: p.localhost.key, alpn: [''] } }),
    ).rejects.toThrow(RangeError)
  })
})

run('TLS origination (engine.connect({ tls }))', () => {
  const { newEngine, clients } = engineScope()

  it('connects with TLS: sends and receives plaintext, the server sees exact bytes', async () => {
    const engine = newEngine()
    const p = pki()
    const received: Buffer[] = []
    const srv = await nodeTlsServer(p.localhost, (s) => {
      clients.push(s)
      s.on('data', (d: Buffer) => received.push(d))
      s.write('hello from node\n')
    })
    const up = await engine.connect({
      host: '127.0.0.1',
      port: srv.port,
      tls: { servername: 'localhost', ca: p.ca, alpn: ['x'] },
    })
    expect(up.tls).toEqual({ version: 'TLSv1.3', resumed: false, cipher: expect.any(String) })
    const [msg] = (await deadline(once(up, 'message'), 5000, 'message')) as [Buffer]
    expect(msg.toString()).toBe('hello from node\n')
    const big = Buffer.alloc(300_000, 7)
    await up.send(Buffer.from('hi'))
    await up.send(big)
    await until(() => Buffer.concat(received).length === 300_002, 5000, 'all bytes at the server')
    expect(Buffer.concat(received).equals(Buffer.concat([Buffer.from('hi'), big]))).toBe(true)
    srv.close()
  })

  it('rejects a server certificate it does not trust (EPROTO, counted)', async () => {
    const engine = newEngine()
    const p = pki()
    const srv = await nodeTlsServer(p.wrong, (s) => clients.push(s))
    const serverHeard = once(srv, 'tlsClientError') as Promise<[NodeJS.ErrnoException]>
    const err = await engine
      .connect({ host: '127.0.0.1', port: srv.port, tls: { servername: 'localhost', ca: p.ca } })
      .then(
        () => undefined,
        (e: unknown) => e,
      )
    expect(err).toBeInstanceOf(SockmapError)
    expect((err as SockmapError).code).toBe('EPROTO')
    expect((err as SockmapError).message).toMatch(/certificate/i)
    expect(engine.stats().tls.failures.certificate).toBe(1)
    // The engine told the server why before it closed.
    const [heard] = await deadline(serverHeard, 5000, 'the server hears the alert')
    expect(heard.code).toBe('ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN')
    srv.on('tlsClientError', () => {})
    // The wrong name is refused too; `insecure` accepts anything.
    const srv2 = await nodeTlsServer(p.localhost, (s) => clients.push(s))
    srv2.on('tlsClientError', () => {})
    await expect(
      engine.connect({ host: '127.0.0.1', port: srv2.port, tls: { servername: 'elsewhere.test', ca: p.ca } }),
    ).rejects.toMatchObject({ code: 'EPROTO' })
    const ok = await engine.connect({ host: '127.0.0.1', port: srv.port, tls: { servername: 'x', insecure: true } })
    expect(ok.tls?.version).toBe('TLSv1.3')
    srv.close()
    srv2.close()
  })

  it('presents a client certificate when the server asks', async () => {
    const engine = newEngine()
    const p = pki()
    const srv = await nodeTlsServer(
      p.localhost,
      (s) => {
        clients.push(s)
        s.end(`${(s.getPeerCertificate() as tls.PeerCertificate).subject.CN}\n`)
      },
      { requestCert: true, rejectUnauthorized: true, ca: p.ca },
    )
    const up = await engine.connect({
      host: '127.0.0.1',
      port: srv.port,
      tls: { servername: 'localhost', ca: p.ca, cert: p.client.cert, key: p.client.key },
    })
    const [msg] = (await deadline(once(up, 'message'), 5000, 'message')) as [Buffer]
    expect(msg.toString()).toBe('sockmap client\n')
    srv.close()
  })

  it('times out a handshake the server never answers (ETIMEDOUT)', async () => {
    const engine = newEngine()
    const mute = net.createServer((s) => clients.push(s))
    mute.listen(0, '127.0.0.1')
    await once(mute, 'listening')
    const port = (mute.address() as net.AddressInfo).port
    await expect(
      engine.connect({ host: '127.0.0.1', port, tls: { servername: 'localhost', handshakeTimeoutMs: 100 } }),
    ).rejects.toMatchObject({ code: 'ETIMEDOUT' })
    expect(engine.stats().tls.failures.timeout).toBe(1)
    mute.close()
  })
})

run('a TLS proxy: terminates on one side, originates on the other, redirects plaintext', () => {
  const { newEngine, clients } = engineScope()

  it('keeps every byte of a TLS source stopped by a full target (backpressure mid-read)', async () => {
    const engine = newEngine({ sendHighWatermark: 64 * 1024, sendLowWatermark: 16 * 1024 })
    const p = pki()
    // A plain upstream that reads nothing until the TLS client's socket has been stopped, then reads everything.
    const received: Buffer[] = []
    let got = 0
    let reader: net.Socket | undefined
    const upstream = net.createServer((s) => {
      clients.push(s)
      reader = s
      s.pause()
      s.on('data', (d: Buffer) => {
        received.push(d)
        got += d.length
      })
    })
    upstream.listen(0, '127.0.0.1')
    await once(upstream, 'listening')
    const server = await engine.listen({
      host: '127.0.0.1',
      port: 0,
      tls: { cert: p.localhost.cert, key: p.localhost.key },
    })
    const peers = engine.sockHash({ maxEntries: 4 })
    peers.attach({ verdict: rules.redirect(peers, rules.key.socket) })
    const accepted = once(server, 'connection') as Promise<[Socket]>
    const c = await tlsClient(server)
    clients.push(c)
    const [client] = await deadline(accepted, 5000, 'connection')
    const up = await engine.connect({ host: '127.0.0.1', port: (upstream.address() as net.AddressInfo).port })
    peers.set(client.id, up)
    peers.set(up.id, client)
    const total = 8 * 1024 * 1024
    const data = Buffer.alloc(total)
    for (let i = 0; i < total; i += 4) data.writeUInt32BE(i, i)
    for (let i = 0; i < total; i += 256 * 1024) c.write(data.subarray(i, i + 256 * 1024))
    await until(() => reader !== undefined && client.stats().backpressureStalls > 0, 20000, 'the TLS source stopped')
    reader!.resume()
    await until(() => got >= total, 20000, 'every byte at the upstream')
    expect(Buffer.concat(received).equals(data)).toBe(true)
    expect(client.stats().bytesIn).toBe(total)
    upstream.close()
  })

  it('carries exact bytes both ways through verdicts on plaintext', async () => {
    const engine = newEngine()
    const p = pki()
    // The upstream: a Node TLS server that answers every line with it uppercased.
    const srv = await nodeTlsServer(p.localhost, (s) => {
      clients.push(s)
      let buf = ''
      s.on('data', (d: Buffer) => {
        buf += d.toString()
        let i
        while ((i = buf.indexOf('\n')) >= 0) {
          s.write(buf.slice(0, i).toUpperCase() + '\n')
          buf = buf.slice(i + 1)
        }
      })
    })
    const server = await engine.listen({
      host: '127.0.0.1',
      port: 0,
      tls: { cert: p.localhost.cert, key: p.localhost.key },
    })
    const peers = engine.sockHash({ maxEntries: 16 })
    const passed: string[] = []
    peers.attach({
      parser: keepLines(),
      verdict: (msg) => {
        const line = msg.data.toString()
        if (line.startsWith('drop')) return 0
        if (line.startsWith('pass')) return 1
        return msg.redirect(peers, msg.socket)
      },
    })
    server.on('connection', (client) => {
      void engine
        .connect({ host: '127.0.0.1', port: srv.port, near: client, tls: { servername: 'localhost', ca: p.ca } })
        .then((up) => {
          peers.set(client.id, up)
          peers.set(up.id, client)
          client.on('message', (m) => passed.push(m.toString()))
        })
    })
    const c = await tlsClient(server)
    clients.push(c)
    const got = lines(c, 3)
    c.write('hello\ndrop me\npass me\n')
    c.write('world\n' + 'x'.repeat(50_000) + '\n')
    const out = await got
    expect(out).toEqual(['HELLO', 'WORLD', 'X'.repeat(50_000)])
    await until(() => passed.length === 1, 2000, 'passed line')
    expect(passed).toEqual(['pass me\n'])
    const st = engine.stats()
    expect(st.tls.handshakes).toBe(2)
    srv.close()
  })
})

run('verdicts on TLS sockets, and passthrough by SNI', () => {
  const { newEngine, clients } = engineScope()

  it('a msg verdict edits plaintext before it is encrypted (pop, push), exact bytes at the TLS server', async () => {
    const engine = newEngine()
    const p = pki()
    const received: Buffer[] = []
    const srv = await nodeTlsServer(p.localhost, (s) => {
      clients.push(s)
      s.on('data', (d: Buffer) => received.push(d))
    })
    const up = await engine.connect({ host: '127.0.0.1', port: srv.port, tls: { servername: 'localhost', ca: p.ca } })
    const map = engine.sockMap({ maxEntries: 1 })
    map.attach({
      msgVerdict: (msg) => {
        msg.pop(0, 2)
        msg.push(msg.length, 1)
        return Verdict.PASS
      },
    })
    map.set(0, up)
    await up.send(Buffer.from('XXhello'))
    await up.send(Buffer.from('YYworld'))
    await until(() => Buffer.concat(received).length === 12, 5000, 'edited bytes at the server')
    expect(Buffer.concat(received)).toEqual(Buffer.from('hello\0world\0'))
    srv.close()
  })

  it('redirects ingress on a TLS socket: plaintext reaches the application of the target', async () => {
    const engine = newEngine()
    const p = pki()
    const server = await engine.listen({
      host: '127.0.0.1',
      port: 0,
      tls: { cert: p.localhost.cert, key: p.localhost.key },
    })
    const map = engine.sockHash({ maxEntries: 4 })
    map.attach({ parser: keepLines(), verdict: (msg) => msg.redirect(map, msg.socket, { ingress: true }) })
    const accepted = once(server, 'connection') as Promise<[Socket]>
    const c = await tlsClient(server)
    clients.push(c)
    const [sock] = await deadline(accepted, 5000, 'connection')
    map.set(sock.id, sock)
    const got: string[] = []
    sock.on('message', (m) => got.push(m.toString()))
    c.write('in one\nin two\n')
    await until(() => got.length === 2, 5000, 'two messages at the application')
    expect(got).toEqual(['in one\n', 'in two\n'])
    expect(sock.stats().redirectedIngress).toBe(2)
  })

  it('routes TLS connections by SNI without terminating them (clientHelloSni), end to end encrypted', async () => {
    const engine = newEngine()
    const p = pki()
    const backend = (tag: string, cert: TestCert) =>
      nodeTlsServer(cert, (s) => {
        clients.push(s)
        s.on('data', (d: Buffer) => s.write(`${tag}:${d.toString()}`))
      })
    const a = await backend('A', p.localhost)
    const b = await backend('B', p.other)
    const server = await engine.listen({ host: '127.0.0.1', port: 0 })
    const peers = engine.sockHash({ maxEntries: 16 })
    peers.attach({ verdict: rules.redirect(peers, rules.key.socket) })
    const names: Array<string | undefined> = []
    server.on('connection', (client) => {
      client.once('message', (hello: Buffer) => {
        const sni = clientHelloSni(hello)
        names.push(sni)
        void engine
          .connect({ host: '127.0.0.1', port: sni === 'b.test' ? b.port : a.port, near: client })
          .then(async (up) => {
            peers.set(client.id, up)
            peers.set(up.id, client)
            await up.send(hello)
          })
      })
    })
    for (const [servername, tag, cn] of [
      ['b.test', 'B', 'b.test'],
      ['localhost', 'A', 'localhost'],
    ] as const) {
      const c = await tlsClient(server, { servername })
      clients.push(c)
      expect(c.getPeerCertificate().subject.CN).toBe(cn)
      const got = lines(c, 1)
      c.write('ping\n')
      expect(await got).toEqual([`${tag}:ping`])
    }
    expect(names).toEqual(['b.test', 'localhost'])
    expect(engine.stats().tls.handshakes).toBe(0)
    expect(clientHelloSni(Buffer.from('GET / HTTP/1.1\r\n\r\n'))).toBeUndefined()
    expect(() => clientHelloSni('x' as never)).toThrow(TypeError)
    a.close()
    b.close()
  })
  /** Two Node TLS backends, `localhost` (tag A) and `b.test` (tag B), answering each line with `tag:line`. */
  async function taggedBackends(): Promise<Array<tls.Server & { port: number }>> {
    const p = pki()
    const backend = (tag: string, cert: TestCert) =>
      nodeTlsServer(cert, (s) => {
        clients.push(s)
        let buf = ''
        s.on('data', (d: Buffer) => {
          buf += d.toString('latin1')
          for (let i; (i = buf.indexOf('\n')) >= 0; buf = buf.slice(i + 1)) s.write(`${tag}:${buf.slice(0, i + 1)}`)
        })
      })
    return [await backend('A', p.localhost), await backend('B', p.other)]
  }

  it('routes passed-through TLS by SNI natively (parsers.tlsRecords, rules.key.sni), every record the same way', async () => {
    const engine = newEngine()
    const [a, b] = await taggedBackends()
    const server = await engine.listen({ host: '127.0.0.1', port: 0 })
    // Client records go to the upstream of their ClientHello's name; the upstreams' bytes go back to their client.
    const byName = engine.sockHash({ maxEntries: 4 })
    const back = engine.sockHash({ maxEntries: 4 })
    const front = engine.sockHash({ maxEntries: 4 })
    const names: Array<string | undefined> = []
    front.attach({
      parser: parsers.tlsRecords(),
      verdict: rules.redirect(byName, rules.key.sni),
    })
    // The upstreams' programs look their client up in `back` (which has none).
    const ups = engine.sockHash({ maxEntries: 4 })
    ups.attach({ verdict: rules.redirect(back, rules.key.socket) })
    const upA = await engine.connect({ host: '127.0.0.1', port: a!.port })
    const upB = await engine.connect({ host: '127.0.0.1', port: b!.port })
    byName.set('localhost', upA)
    byName.set('b.test', upB)
    ups.set(upA.id, upA)
    ups.set(upB.id, upB)
    for (const [servername, tag, cn, up] of [
      ['B.Test', 'B', 'b.test', upB],
      ['localhost', 'A', 'localhost', upA],
    ] as const) {
      const accepted = once(server, 'connection') as Promise<[Socket]>
      const c = tls.connect({ host: '127.0.0.1', port: server.address().port, servername, ca: pki().ca })
      clients.push(c)
      const [sock] = await deadline(accepted, 5000, 'connection')
      back.set(up.id, sock)
      front.set(sock.id, sock)
      await deadline(once(c, 'secureConnect'), 5000, 'secureConnect through the gateway')
      names.push(c.servername as string)
      expect(c.getPeerCertificate().subject.CN).toBe(cn)
      for (const word of ['ping', 'pong'.repeat(5000)]) {
        const got = lines(c, 1)
        c.write(`${word}\n`)
        expect(await got).toEqual([`${tag}:${word}`])
      }
      // Every record (ClientHello, Finished, the application data) went one way; none was dropped.
      await acknowledged(sock)
      expect(sock.stats().redirectedEgress).toBe(sock.stats().messagesIn)
    }
    expect(names).toEqual(['B.Test', 'localhost'])
    expect(front.stats().droppedNoKey).toBe(0)
    expect(engine.stats().tls.handshakes).toBe(0)

    // A ClientHello without a server name (an IP address is never sent) has no key: dropped and counted.
    const accepted = once(server, 'connection') as Promise<[Socket]>
    const anon = tls.connect({ host: '127.0.0.1', port: server.address().port, ca: pki().ca })
    clients.push(anon)
    anon.on('error', () => {})
    const [sock] = await deadline(accepted, 5000, 'anonymous connection')
    front.set(sock.id, sock)
    await until(() => front.stats().droppedNoKey === 1, 5000, 'the nameless ClientHello dropped')
    expect(sock.stats().messagesIn).toBe(1)

    // Bytes that are not TLS records close that socket alone (EPROTO).
    const plain = net.connect({ host: '127.0.0.1', port: server.address().port })
    clients.push(plain)
    const [bad] = (await deadline(once(server, 'connection'), 5000, 'plain connection')) as [Socket]
    front.set(bad.id, bad)
    plain.write('GET / HTTP/1.1\r\n\r\n')
    expect((await errorOf(bad)).code).toBe('EPROTO')
    a!.close()
    b!.close()
  })

  it('routes terminated TLS by the SNI its handshake agreed (rules.key.sni) to TLS upstreams, exact bytes', async () => {
    const engine = newEngine()
    const p = pki()
    const [a, b] = await taggedBackends()
    const server = await engine.listen({
      host: '127.0.0.1',
      port: 0,
      tls: {
        cert: p.localhost.cert,
        key: p.localhost.key,
        sni: { 'b.test': { cert: p.other.cert, key: p.other.key } },
      },
    })
    const byName = engine.sockHash({ maxEntries: 4 })
    const back = engine.sockHash({ maxEntries: 4 })
    const front = engine.sockHash({ maxEntries: 4 })
    front.attach({ parser: keepLines(), verdict: rules.redirect(byName, rules.key.sni) })
    // The upstreams' programs look their client up in `back` (which has none).
    const ups = engine.sockHash({ maxEntries: 4 })
    ups.attach({ verdict: rules.redirect(back, rules.key.socket) })
    const upA = await engine.connect({ host: '127.0.0.1', port: a!.port, tls: { servername: 'localhost', ca: p.ca } })
    const upB = await engine.connect({ host: '127.0.0.1', port: b!.port, tls: { servername: 'b.test', ca: p.ca } })
    byName.set('localhost', upA)
    byName.set('b.test', upB)
    ups.set(upA.id, upA)
    ups.set(upB.id, upB)
    for (const [servername, tag, up] of [
      ['b.test', 'B', upB],
      ['localhost', 'A', upA],
    ] as const) {
      const accepted = once(server, 'connection') as Promise<[Socket]>
      const c = await tlsClient(server, { servername })
      clients.push(c)
      const [sock] = await deadline(accepted, 5000, 'connection')
      expect(sock.tls?.sni).toBe(servername)
      back.set(up.id, sock)
      front.set(sock.id, sock)
      const got = lines(c, 2)
      c.write('one\ntwo\n')
      expect(await got).toEqual([`${tag}:one`, `${tag}:two`])
    }
    // A plain socket has no server name: its messages have no key.
    const plainSrv = await engine.listen({ host: '127.0.0.1', port: 0 })
    const [plain] = await Promise.all([
      once(plainSrv, 'connection') as Promise<[Socket]>,
      (async () => {
        const c = net.connect({ host: '127.0.0.1', port: plainSrv.address().port })
        clients.push(c)
        await once(c, 'connect')
        c.write('no name\n')
      })(),
    ]).then(([[s]]) => [s])
    front.set(plain!.id, plain!)
    await until(() => front.stats().droppedNoKey === 1, 5000, 'the plain line dropped')
    a!.close()
    b!.close()
  })

  it('msg.tls: what the handshake agreed on TLS sockets, the ClientHello name on passed-through ones', async () => {
    const engine = newEngine()
    const p = pki()
    const seen: unknown[] = []
    const recording = (parser: ReturnType<typeof parsers.none>) => {
      const map = engine.sockHash({ maxEntries: 8 })
      map.attach({
        parser,
        verdict: (msg) => {
          seen.push(msg.tls)
          return Verdict.DROP
        },
      })
      return map
    }
    const lineMap = recording(keepLines())
    const recordMap = recording(parsers.tlsRecords())
    const terminated = await engine.listen({
      host: '127.0.0.1',
      port: 0,
      tls: { cert: p.localhost.cert, key: p.localhost.key, alpn: ['x-test'] },
    })
    const passthrough = await engine.listen({ host: '127.0.0.1', port: 0 })
    const plainSrv = await engine.listen({ host: '127.0.0.1', port: 0 })
    terminated.on('connection', (s) => lineMap.set(s.id, s))
    passthrough.on('connection', (s) => recordMap.set(s.id, s))
    plainSrv.on('connection', (s) => lineMap.set(s.id, s))

    const c = await tlsClient(terminated, { ALPNProtocols: ['x-test'] })
    clients.push(c)
    c.write('a\nb\n')
    await until(() => seen.length === 2, 5000, 'two terminated messages')
    const agreed = { version: 'TLSv1.3', alpn: 'x-test', sni: 'localhost', resumed: false, cipher: expect.any(String) }
    expect(seen).toEqual([agreed, agreed])

    // A real ClientHello (caught by a plain server), then an application data record, passed through.
    const catcher = net.createServer((s) => {
      clients.push(s)
      s.once('data', (hello: Buffer) => caught.push(hello))
    })
    const caught: Buffer[] = []
    catcher.listen(0, '127.0.0.1')
    await once(catcher, 'listening')
    const probe = tls.connect({
      host: '127.0.0.1',
      port: (catcher.address() as net.AddressInfo).port,
      servername: 'Pass.Test',
    })
    clients.push(probe)
    probe.on('error', () => {})
    await until(() => caught.length === 1, 5000, 'a ClientHello')
    seen.length = 0
    const pt = net.connect({ host: '127.0.0.1', port: passthrough.address().port })
    clients.push(pt)
    pt.write(Buffer.concat([caught[0]!, Buffer.from([0x17, 0x03, 0x03, 0x00, 0x02, 0x68, 0x69])]))
    await until(() => seen.length === 2, 5000, 'the two records')
    expect(seen).toEqual([{ sni: 'pass.test' }, { sni: 'pass.test' }])
    expect(recordMap.stats().messagesIn).toBe(2)

    seen.length = 0
    const plain = net.connect({ host: '127.0.0.1', port: plainSrv.address().port })
    clients.push(plain)
    plain.write('plain\n')
    await until(() => seen.length === 1, 5000, 'the plain message')
    expect(seen).toEqual([undefined])
    catcher.close()
  })
})
