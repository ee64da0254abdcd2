// Every path on which the binding hands JavaScript bytes: delivered messages, ring copies, SockHash keys and the
// parser defaults. Electron's V8 memory cage refuses buffers over memory V8 did not allocate, so each of these must
// give JavaScript a buffer from its own heap. `npm run test:electron` runs the whole suite against a build in which
// creating an external buffer fails (SOCKMAP_ELECTRON_CAGE=1); there the first test below proves the trap is armed.
import { describe, expect, it } from 'vitest'

import * as binding from '../src/binding.cjs'
import { SgRing, nativeDefaults, parsers } from '../src/index'
import { clientOf, deadline, frame, listening, messagesN, engineScope } from './helpers'

const { newEngine, clients } = engineScope()
const cage = process.env.SOCKMAP_ELECTRON_CAGE === '1'
const probe = (binding as unknown as { cageProbe?: () => Buffer }).cageProbe

describe('bytes handed to JavaScript', () => {
  it.runIf(cage)('in the Electron-like build, a buffer over Rust memory throws', () => {
    expect(typeof probe).toBe('function')
    expect(() => probe?.()).toThrow()
  })

  it.runIf(!cage)('the release build carries no Electron-like stand-ins', () => {
    expect(probe).toBeUndefined()
  })

  it('delivered messages arrive as buffers JavaScript owns', async () => {
    const engine = newEngine()
    const server = await listening(engine)
    const { client, sock } = await clientOf(server)
    clients.push(client)
    const map = engine.sockMap({ maxEntries: 1 })
    map.attach({ parser: parsers.lengthField({ lengthFieldLength: 4, initialBytesToStrip: 4 }) })
    const got = messagesN(sock, 7)
    map.set(0, sock)
    client.write(Buffer.concat([frame('one'), frame('four')]))
    const msgs = await deadline(got, 5000, 'messages')
    expect(msgs.map((m) => m.toString())).toEqual(['one', 'four'])
    for (const m of msgs) expect(Buffer.isBuffer(m)).toBe(true)
  })

  it('ring copies, map keys and parser defaults arrive as buffers', async () => {
    const ring = new SgRing()
    ring.append(Buffer.from('hello '))
    ring.append(Buffer.from('world'))
    expect(ring.toBuffer().toString()).toBe('hello world')
    expect(ring.pull(3, 8).toString()).toBe('lo wo')

    const engine = newEngine()
    const { client, sock } = await clientOf(await listening(engine))
    clients.push(client)
    const hash = engine.sockHash({ maxEntries: 4 })
    hash.set('key', sock)
    const keys = hash.keys()
    expect(keys.map((k) => k.toString())).toEqual(['key'])
    for (const k of keys) expect(Buffer.isBuffer(k)).toBe(true)

    const delimiters = nativeDefaults().delimiter.delimiters ?? []
    expect(delimiters.length).toBeGreaterThan(0)
    for (const d of delimiters) expect(Buffer.isBuffer(d)).toBe(true)
  })
})
