// The redirect matrix, in the spirit of the kernel's sockmap_redir selftest: {SockMap, SockHash} × {stream verdict,
// msg verdict} × {egress, ingress} × source family × target family, over TCP on IPv4 and IPv6 and Unix stream
// sockets. Every cell moves exact bytes end to end against node:net peers: a stream verdict redirects what the
// source's peer writes, a msg verdict what the source's application sends; egress comes out of the target to its
// peer, ingress reaches the target's application. `tls` sources and targets are TLS the engine terminates: their
// peers write and read through Node `tls`, the verdicts see plaintext. (Datagram kinds have no cells here.)
import { describe, expect, it } from 'vitest'

import { Verdict, type Engine, type SockHash, type SockMap, type Socket } from '../src/index'
import { clientKinds, clientOn, pattern, type ClientKind } from './families'
import { deadline, engineScope, readN } from './helpers'

const { newEngine, clients } = engineScope()

const mapKinds = ['sockMap', 'sockHash'] as const
const verdictKinds = ['stream', 'msg'] as const
const directions = ['egress', 'ingress'] as const
const kinds = clientKinds.filter((f) => f !== 'abstract')

interface Cell {
  map: (typeof mapKinds)[number]
  verdict: (typeof verdictKinds)[number]
  direction: (typeof directions)[number]
  from: ClientKind
  to: ClientKind
}

const cells: Cell[] = mapKinds.flatMap((map) =>
  verdictKinds.flatMap((verdict) =>
    directions.flatMap((direction) =>
      kinds.flatMap((from) => kinds.map((to) => ({ map, verdict, direction, from, to }))),
    ),
  ),
)

/** Collects `n` bytes of messages delivered to an engine socket's application. */
function appBytes(sock: Socket, n: number): Promise<Buffer> {
  const got = new Promise<Buffer>((resolve) => {
    const got: Buffer[] = []
    let len = 0
    sock.on('message', (m) => {
      got.push(Buffer.from(m))
      len += m.length
      if (len >= n) resolve(Buffer.concat(got))
    })
  })
  return deadline(got, 5000, `${n} bytes of messages`)
}

/** Runs one cell: the source redirects `bytes` to the target as the cell says; returns what arrived where it should. */
async function run(engine: Engine, cell: Cell, bytes: Buffer): Promise<Buffer> {
  const src = await clientOn(engine, cell.from, clients)
  const dst = await clientOn(engine, cell.to, clients)
  const ingress = cell.direction === 'ingress'
  const map: SockMap | SockHash =
    cell.map === 'sockMap' ? engine.sockMap({ maxEntries: 2 }) : engine.sockHash({ maxEntries: 2 })
  const [srcKey, dstKey] = cell.map === 'sockMap' ? [0, 1] : ['source', 'target']
  const redirect = (msg: {
    redirect: (m: SockMap | SockHash, k: number | string, o: { ingress: boolean }) => Verdict
  }) => msg.redirect(map, dstKey, { ingress })
  // The target passes what its own peer writes (nothing here), so only the source's bytes reach it.
  const judge = (msg: Parameters<typeof redirect>[0] & { socket: number }) =>
    msg.socket === src.sock.id ? redirect(msg) : Verdict.PASS
  map.attach(cell.verdict === 'stream' ? { verdict: judge } : { msgVerdict: judge })
  const arrived = ingress ? appBytes(dst.sock, bytes.length) : readN(dst.client, bytes.length)
  if (cell.map === 'sockMap') {
    ;(map as SockMap).set(srcKey as number, src.sock).set(dstKey as number, dst.sock)
  } else {
    ;(map as SockHash).set(srcKey, src.sock).set(dstKey, dst.sock)
  }
  if (cell.verdict === 'stream') {
    src.client.write(bytes)
  } else {
    expect(await src.sock.send(bytes)).toBe(bytes.length)
  }
  const got = await arrived
  src.sock.destroy()
  dst.sock.destroy()
  await Promise.all([src.server.close(), dst.server.close()])
  return got
}

describe('the redirect matrix', () => {
  it(`moves exact bytes in every one of its ${cells.length} cells`, async () => {
    const engine = newEngine()
    const failures: string[] = []
    for (const [i, cell] of cells.entries()) {
      const bytes = pattern(48 << 10, i)
      const got = await run(engine, cell, bytes)
      if (!got.equals(bytes))
        failures.push(`${JSON.stringify(cell)}: ${got.length} bytes, not the ${bytes.length} sent`)
    }
    expect(failures).toEqual([])
  })
})
