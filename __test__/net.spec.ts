// Socket families through the TypeScript API: TCP over IPv4 and IPv6 and Unix stream sockets (filesystem paths and
// Linux abstract names), against node:net peers. Every pair of families proxies exact bytes both ways with the FIN
// forwarded; a parser and a TypeScript verdict work on a Unix socket as on TCP; adopt() takes a Node Unix socket;
// the socket file goes away when the server closes; bad options are TypeError/RangeError naming the argument.
import { once } from 'node:events'
import { existsSync, writeFileSync, rmSync } from 'node:fs'
import net from 'node:net'

import { describe, expect, it } from 'vitest'

import { Verdict, parsers, rules, type Engine, type Socket } from '../src/index'
import {
  clientOn as clientOnIn,
  families,
  pattern,
  unixName,
  upstreamOn as upstreamOnIn,
  type Family,
} from './families'
import { deadline, engineScope, frame, readN, until } from './helpers'

const { newEngine, clients } = engineScope()
/** Unix sockets exist off Windows only (the engine refuses them there with `EOPNOTSUPP`). */
const unixIt = it.skipIf(process.platform === 'win32')
const clientOn = (engine: Engine, family: Family) => clientOnIn(engine, family, clients)
const upstreamOn = (engine: Engine, family: Family, near: Socket) => upstreamOnIn(engine, family, near, clients)

describe('socket families', () => {
  it('proxies every family to every family with exact bytes and the FIN', async () => {
    const engine = newEngine()
    const total = 256 << 10
    for (const from of families) {
      for (const to of families) {
        const c = await clientOn(engine, from)
        const u = await upstreamOn(engine, to, c.sock)
        const pairs = engine.sockHash({ maxEntries: 4 })
        pairs.attach({ verdict: rules.redirect(pairs, rules.key.socket) })
        pairs.set(c.sock.id, u.sock).set(u.sock.id, c.sock)
        const there = pattern(total, 1)
        const back = pattern(total, 2)
        const gotThere = readN(u.peer, total)
        const gotBack = readN(c.client, total)
        c.client.write(there)
        u.peer.write(back)
        expect((await gotThere).equals(there), `${from} → ${to}`).toBe(true)
        expect((await gotBack).equals(back), `${to} → ${from}`).toBe(true)
        const ended = once(u.peer, 'end')
        c.client.end()
        await deadline(ended, 5000, `FIN ${from} → ${to}`)
        expect(c.sock.stats().dropped).toBe(0)
        c.sock.destroy()
        u.sock.destroy()
        await c.server.close()
      }
    }
  })

  unixIt('runs a parser and a TypeScript verdict on a Unix socket, routing frames to TCP and back', async () => {
    const engine = newEngine()
    const errors: unknown[] = []
    engine.on('error', (e) => errors.push(e))
    const c = await clientOn(engine, 'unix')
    expect(c.sock.remoteAddress).toEqual({ address: '', port: 0, family: 'Unix' })
    const u = await upstreamOn(engine, 'tcp6', c.sock)
    const route = engine.sockHash({ maxEntries: 4 })
    route.attach({
      parser: parsers.lengthField({ lengthFieldLength: 4 }),
      verdict: (msg) =>
        msg.data[4] === 0x78 ? Verdict.DROP : msg.redirect(route, msg.socket === c.sock.id ? 'up' : 'client'),
    })
    route.set('up', u.sock)
    route.set('client', c.sock)
    const frames = [frame('one'), frame('xdropped'), frame('two'), frame('three')]
    const want = Buffer.concat([frames[0]!, frames[2]!, frames[3]!])
    const got = readN(u.peer, want.length)
    for (const f of frames) c.client.write(f)
    expect((await got).equals(want)).toBe(true)
    await until(() => c.sock.stats().dropped === 1, 5000, 'one drop counted')
    // The upstream's frames go back to the Unix client through the same verdict.
    const reply = readN(c.client, frame('pong').length)
    u.peer.write(frame('pong'))
    expect((await reply).equals(frame('pong'))).toBe(true)
    expect(errors).toEqual([])
  })

  unixIt('adopts a node:net socket over a Unix path with the bytes Node had buffered', async () => {
    const engine = newEngine()
    const path = unixName('unix')
    let peer: net.Socket | undefined
    const srv = net.createServer((s) => {
      peer = s
      clients.push(s)
    })
    srv.listen(path)
    await deadline(once(srv, 'listening'), 5000, 'net listen')
    const local = net.connect({ path })
    clients.push(local)
    await deadline(once(local, 'connect'), 5000, 'connect')
    await until(() => peer !== undefined, 5000, 'accepted')
    local.pause()
    peer!.write('early-')
    await until(() => local.readableLength >= 6, 5000, 'Node buffered the early bytes')
    const sock = engine.adopt(local)
    const echo = engine.sockMap({ maxEntries: 1 })
    echo.attach({ verdict: rules.redirect(echo, 0) })
    const got = readN(peer!, 10)
    echo.set(0, sock)
    peer!.write('late')
    expect((await got).toString()).toBe('early-late')
    srv.close()
  })

  unixIt('removes the socket file when the server closes, and refuses a path that exists', async () => {
    const engine = newEngine()
    const path = unixName('unix')
    const server = await engine.listen({ path })
    expect(server.address()).toEqual({ address: path, port: 0, family: 'Unix' })
    expect(existsSync(path)).toBe(true)
    await expect(engine.listen({ path })).rejects.toMatchObject({ code: 'EADDRINUSE' })
    await server.close()
    await until(() => !existsSync(path), 5000, 'socket file removed')
    writeFileSync(path, 'stale')
    await expect(engine.listen({ path })).rejects.toMatchObject({ code: 'EADDRINUSE' })
    rmSync(path)
    await expect(engine.connect({ path })).rejects.toMatchObject({ code: 'ENOENT' })
  })

  unixIt('removes the socket files of its servers when the engine closes', async () => {
    const engine = newEngine()
    const paths = [unixName('unix'), unixName('unix')]
    for (const path of paths) await engine.listen({ path })
    expect(paths.map(existsSync)).toEqual([true, true])
    await engine.close()
    expect(paths.map(existsSync)).toEqual([false, false])
  })

  it('listens on [::] for IPv6 clients and IPv4 ones where the OS is dual-stack', async () => {
    const engine = newEngine()
    const server = await engine.listen({ host: '::', port: 0 })
    expect(server.address().family).toBe('IPv6')
    const v6 = once(server, 'connection') as Promise<[Socket]>
    const c6 = net.connect({ host: '::1', port: server.address().port })
    clients.push(c6)
    const [s6] = await deadline(v6, 5000, 'IPv6 accept')
    expect(s6.remoteAddress).toMatchObject({ address: '::1', family: 'IPv6' })
    const v4 = once(server, 'connection') as Promise<[Socket]>
    const c4 = net.connect({ host: '127.0.0.1', port: server.address().port })
    clients.push(c4)
    const dualStack = await new Promise<boolean>((resolve) => {
      c4.once('connect', () => resolve(true))
      c4.once('error', () => resolve(false))
    })
    if (!dualStack) return
    const [s4] = await deadline(v4, 5000, 'IPv4 accept')
    expect(s4.remoteAddress).toMatchObject({ address: '::ffff:127.0.0.1', family: 'IPv6' })
  })

  it('rejects bad Unix options with TypeError/RangeError naming the argument', async () => {
    // (checked before the platform is asked, so on Windows too)
    const engine = newEngine()
    const bad = [
      [{ path: '/tmp/x.sock', port: 1 }, TypeError, /options\.path/],
      [{ path: '/tmp/x.sock', host: '::1' }, TypeError, /options\.path/],
      [{ path: 7 }, TypeError, /options\.path/],
      [{ path: '' }, RangeError, /options\.path/],
      [{ path: `/tmp/${'x'.repeat(120)}` }, RangeError, /options\.path/],
      [{ path: '/tmp/a\0b' }, TypeError, /options\.path/],
      [{ path: '\0' }, RangeError, /options\.path/],
      [{ path: `\0${'x'.repeat(108)}` }, RangeError, /options\.path/],
    ] as const
    for (const [options, type, message] of bad) {
      await expect(engine.listen(options as never)).rejects.toThrow(type)
      await expect(engine.listen(options as never)).rejects.toThrow(message)
      expect(() => engine.connect(options as never)).toThrow(type)
      expect(() => engine.connect(options as never)).toThrow(message)
    }
    await expect(engine.connect({ host: '::1', port: 1, path: undefined })).rejects.toMatchObject({
      code: 'ECONNREFUSED',
    })
  })
})
