// What an idle socket costs on the JavaScript side: a Socket carries no listener table and no closure until someone
// listens, and an accepted connection gets a Socket only once the application reaches it.
import { once } from 'node:events'
import net from 'node:net'

import { describe, expect, it } from 'vitest'

import { clientOf, deadline, engineScope, listening, readN, until } from './helpers'

const { newEngine, clients } = engineScope()

describe('lazy sockets', () => {
  it('a socket no one listens to holds only its id and address; the first message listener still resumes it', async () => {
    const engine = newEngine()
    const server = await listening(engine)
    const { client, sock } = await clientOf(server)
    clients.push(client)
    expect(Object.keys(sock)).toEqual(['id', 'remoteAddress'])
    expect(Object.getOwnPropertySymbols(sock)).toEqual([])
    expect(sock.listenerCount('newListener')).toBe(0)
    const got = once(sock, 'message')
    client.write('ping')
    expect(((await deadline(got, 5000, 'a message')) as [Buffer])[0].toString()).toBe('ping')
    await sock.send('pong')
    expect((await readN(client, 4)).toString()).toBe('pong')
  })

  it('an accepted connection no one asked for gets a Socket only when reached, and closes with the engine', async () => {
    const engine = newEngine()
    const server = await listening(engine)
    const peers = engine.sockHash({ maxEntries: 4 })
    const client = net.connect({ host: '127.0.0.1', port: server.address().port })
    clients.push(client)
    await deadline(once(client, 'connect'), 5000, 'connect')
    // The listener and the accepted connection, without a Socket object for the latter.
    await until(() => engine.stats().sockets === 2, 5000, 'the accepted connection')
    expect(peers.size).toBe(0)
    // With a 'connection' listener, the next one arrives as a Socket.
    const { client: c2, sock } = await clientOf(server)
    clients.push(c2)
    expect(sock.closed).toBe(false)
    expect(engine.stats().sockets).toBe(3)
    // Closing the engine closes both.
    const closed = once(client, 'close')
    await engine.close()
    await deadline(closed, 5000, 'the unasked-for connection closed')
  })
})
