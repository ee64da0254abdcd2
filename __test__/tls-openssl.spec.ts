// TLS in the engine against OpenSSL's own peers (`openssl s_client` / `s_server`): TLS 1.3 KeyUpdate in both
// directions mid-stream, and a TLS 1.2 renegotiation attempt, which is refused while other connections go on.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'

import { afterEach, describe, expect, it } from 'vitest'

import { parsers, rules, type Engine, type Server, type Socket } from '../src/index'
import { deadline, engineScope, until } from './helpers'
import { hasOpenssl, pki } from './tls-certs'

const run = hasOpenssl() ? describe : describe.skip
if (!hasOpenssl()) console.warn('tls-openssl.spec: openssl not found, skipping')

/** An openssl process whose stdout and stderr are collected in `out`. */
interface Peer {
  proc: ChildProcessWithoutNullStreams
  out: () => string
}

const procs: ChildProcessWithoutNullStreams[] = []
afterEach(() => {
  for (const p of procs.splice(0)) p.kill('SIGKILL')
})

function openssl(args: string[]): Peer {
  const proc = spawn('openssl', args)
  procs.push(proc)
  let out = ''
  proc.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')))
  proc.stderr.on('data', (d: Buffer) => (out += d.toString('latin1')))
  return { proc, out: () => out }
}

/** What `-msg` prints for a KeyUpdate sent / received. */
const KEY_UPDATE_SENT = />>> TLS 1\.3, Handshake \[length 0005\], KeyUpdate/
const KEY_UPDATE_RECEIVED = /<<< TLS 1\.3, Handshake \[length 0005\], KeyUpdate/

/** Times `pattern` occurs in `text`. */
function count(text: string, pattern: RegExp): number {
  return (text.match(new RegExp(pattern.source, 'g')) ?? []).length
}

/** An engine TLS server whose sockets echo every line. */
async function echoServer(engine: Engine): Promise<{ server: Server; accepted: Socket[] }> {
  const p = pki()
  const server = await engine.listen({
    host: '127.0.0.1',
    port: 0,
    tls: { cert: p.localhost.cert, key: p.localhost.key },
  })
  const peers = engine.sockHash({ maxEntries: 16 })
  peers.attach({
    parser: parsers.delimiter({ delimiters: ['\n'], stripDelimiter: false }),
    verdict: rules.redirect(peers, rules.key.socket),
  })
  const accepted: Socket[] = []
  server.on('connection', (s) => {
    accepted.push(s)
    s.on('error', () => {})
    peers.set(s.id, s)
  })
  return { server, accepted }
}

function sClient(server: Server, version: '-tls1_3' | '-tls1_2'): Peer {
  const p = pki()
  const args = ['s_client', '-connect', `127.0.0.1:${server.address().port}`, '-servername', 'localhost']
  return openssl([...args, '-CAfile', p.caFile, version, '-msg'])
}

run('TLS against openssl s_client / s_server', () => {
  const { newEngine } = engineScope()

  it('KeyUpdate from the client (requesting ours) mid-stream: both sides rekey, bytes go on', async () => {
    const engine = newEngine()
    const { server, accepted } = await echoServer(engine)
    const c = sClient(server, '-tls1_3')
    await until(() => accepted.length === 1, 5000, 'handshake')
    c.proc.stdin.write('before-update\n')
    await until(() => c.out().includes('before-update'), 5000, 'first echo')
    c.proc.stdin.write('K\n')
    // s_client takes the rest of a command's read as part of it: the next line goes once the update is out.
    await until(() => count(c.out(), KEY_UPDATE_SENT) === 1, 5000, 'their KeyUpdate')
    c.proc.stdin.write('after-update\n')
    await until(() => c.out().includes('after-update'), 5000, 'echo after the update')
    // s_client sent its KeyUpdate (update_requested); the engine answered with its own before the echo (rustls sends
    // it with its next record).
    expect(count(c.out(), KEY_UPDATE_SENT)).toBe(1)
    expect(count(c.out(), KEY_UPDATE_RECEIVED)).toBe(1)
    c.proc.stdin.write('k\n')
    await until(() => count(c.out(), KEY_UPDATE_SENT) === 2, 5000, 'their second KeyUpdate')
    c.proc.stdin.write('after-second-update\n')
    await until(() => c.out().includes('after-second-update'), 5000, 'echo after the second update')
    const [sock] = accepted
    expect(sock!.closed).toBe(false)
    expect(sock!.stats().messagesIn).toBe(3)
    expect(engine.stats().tls.failures).toEqual({ certificate: 0, alert: 0, protocol: 0, timeout: 0, closed: 0 })
  })

  it('KeyUpdate from the server to an engine client: its replies still decrypt', async () => {
    const engine = newEngine()
    const p = pki()
    const srv = openssl([
      's_server',
      '-accept',
      '127.0.0.1:0',
      '-naccept',
      '1',
      '-cert',
      p.localhost.certFile,
      '-key',
      p.localhost.keyFile,
      '-tls1_3',
      '-msg',
    ])
    await until(() => /ACCEPT 127\.0\.0\.1:\d+/.test(srv.out()), 5000, 's_server listening')
    const srvPort = Number(/ACCEPT 127\.0\.0\.1:(\d+)/.exec(srv.out())![1])
    const up = await engine.connect({ host: '127.0.0.1', port: srvPort, tls: { servername: 'localhost', ca: p.ca } })
    const got: string[] = []
    up.on('message', (m) => got.push(m.toString()))
    await up.send(Buffer.from('from-engine-1\n'))
    await until(() => srv.out().includes('from-engine-1'), 5000, 's_server got the first line')
    srv.proc.stdin.write('K\n')
    // s_server takes the rest of a command's read as part of it: the next line goes once the update is out.
    await until(() => count(srv.out(), KEY_UPDATE_SENT) === 1, 5000, 'their KeyUpdate')
    srv.proc.stdin.write('from-openssl\n')
    await until(() => got.join('').includes('from-openssl\n'), 5000, 'the line sent after the update')
    await up.send(Buffer.from('from-engine-2\n'))
    await until(() => srv.out().includes('from-engine-2'), 5000, 's_server got the line after the update')
    expect(count(srv.out(), KEY_UPDATE_SENT)).toBe(1)
    expect(count(srv.out(), KEY_UPDATE_RECEIVED)).toBe(1)
    expect(got.join('')).toBe('from-openssl\n')
  })

  it('refuses a TLS 1.2 renegotiation: that socket closes (EPROTO, alert counted), others go on', async () => {
    const engine = newEngine()
    const { server, accepted } = await echoServer(engine)
    const other = sClient(server, '-tls1_3')
    await until(() => accepted.length === 1, 5000, 'first handshake')
    const c = sClient(server, '-tls1_2')
    await until(() => accepted.length === 2, 5000, 'second handshake')
    const sock = accepted[1]!
    const closed = new Promise<boolean>((resolve) => sock.on('close', resolve))
    c.proc.stdin.write('R\n')
    await until(() => c.out().includes('warning no_renegotiation'), 5000, 'no_renegotiation alert')
    expect(await deadline(closed, 5000, 'renegotiating socket closed')).toBe(true)
    expect(engine.stats().tls.failures.alert).toBe(1)
    other.proc.stdin.write('unaffected\n')
    await until(() => other.out().includes('unaffected'), 5000, 'the other connection echoes')
    expect(accepted[0]!.closed).toBe(false)
  })
})
