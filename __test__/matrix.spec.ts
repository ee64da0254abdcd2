// The redirect matrix, in the spirit of the kernel's sockmap_redir selftest: {SockMap, SockHash} × {stream verdict,
// msg verdict} × {egress, ingress} × source family × target family, over TCP on IPv4 and IPv6 and Unix stream
// sockets. Every cell moves exact bytes end to end against node:net peers: a stream verdict redirects what the
// source's peer writes, a msg verdict what the source's application sends; egress comes out of the target to its
// peer, ingress reaches the target's application. `tls` sources and targets are TLS the engine terminates: their
// peers write and read through Node `tls`, the verdicts see plaintext. The datagram matrix crosses UDP over IPv4 and
// IPv6 and Unix datagram sockets with each other and with TCP: each message one datagram, boundaries kept (a stream
// target gets the bytes in order), against node:dgram peers; its unsupported cells fail with their code.
import { describe, expect, it } from 'vitest'

import { Verdict, parsers, rules, type Engine, type SockHash, type SockMap, type Socket } from '../src/index'
import {
  clientKinds,
  clientOn,
  dgramFamilies,
  dgramPeerOn,
  pattern,
  type ClientKind,
  type DgramFamily,
} from './families'
import { deadline, engineScope, frame, messagesN, readN } from './helpers'

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

const dgramVerdicts = ['native', 'stream', 'msg'] as const
/** TCP over IPv4 stands for the stream kinds, whose crossings with each other the matrix above covers. */
const dgramKinds: Array<'tcp4' | DgramFamily> = ['tcp4', ...dgramFamilies]

interface DgramCell {
  map: (typeof mapKinds)[number]
  verdict: (typeof dgramVerdicts)[number]
  direction: (typeof directions)[number]
  from: (typeof dgramKinds)[number]
  to: (typeof dgramKinds)[number]
}

const dgramCells: DgramCell[] = mapKinds.flatMap((map) =>
  dgramVerdicts.flatMap((verdict) =>
    directions.flatMap((direction) =>
      dgramKinds.flatMap((from) =>
        dgramKinds
          .filter((to) => from !== 'tcp4' || to !== 'tcp4')
          .map((to) => ({ map, verdict, direction, from, to })),
      ),
    ),
  ),
)

/**
 * The code a cell fails with, if it is outside the matrix: a msg verdict runs only on what a stream socket's
 * application sends, and its egress goes to stream sockets only (the kernel's sk_msg egress is TCP to TCP).
 */
function unsupported(cell: DgramCell): string | undefined {
  if (cell.verdict === 'msg' && cell.from !== 'tcp4') return 'EOPNOTSUPP'
  if (cell.verdict === 'msg' && cell.direction === 'egress' && cell.to !== 'tcp4') return 'EOPNOTSUPP'
  return undefined
}

/** One end of a cell: the engine socket, how its peer writes messages to it, what its peer receives. */
interface End {
  sock: Socket
  /** The peer writes the messages (a stream: their bytes in order; datagrams: one each). */
  write(messages: Buffer[]): Promise<void>
  /** What the peer receives of `messages` sent to it: a stream's bytes as one buffer, or each datagram. */
  receive(messages: Buffer[]): Promise<Buffer[]>
  close(): Promise<void>
}

async function endOn(engine: Engine, peers: Engine, kind: DgramCell['from'], near?: Socket): Promise<End> {
  if (kind === 'tcp4') {
    const c = await clientOn(engine, kind, clients)
    return {
      sock: c.sock,
      write: async (messages) => void c.client.write(Buffer.concat(messages)),
      receive: async (messages) => [await readN(c.client, Buffer.concat(messages).length)],
      close: async () => {
        c.sock.destroy()
        await c.server.close()
      },
    }
  }
  const p = await dgramPeerOn(engine, kind, peers, near)
  return {
    sock: p.sock,
    write: async (messages) => {
      for (const m of messages) await p.send(m)
    },
    receive: (messages) => p.received(messages.length),
    close: async () => {
      p.sock.destroy()
      p.close()
    },
  }
}

/** The counters that say where a socket's messages went. */
function counts(sock: Socket): string {
  const s = sock.stats()
  const keys = [
    'messagesIn',
    'bytesIn',
    'bytesOut',
    'passed',
    'redirectedEgress',
    'redirectedIngress',
    'droppedNoKey',
    'droppedDeadTarget',
    'droppedOverflow',
    'droppedVerdict',
    'droppedTooBig',
    'droppedSendError',
  ] as const
  return keys.map((k) => `${k} ${s[k]}`).join(', ')
}

/** Runs one datagram cell: what arrived where it should, or the code a send failed with. */
async function runDgram(
  engine: Engine,
  peers: Engine,
  cell: DgramCell,
  messages: Buffer[],
): Promise<Buffer[] | string> {
  const src = await endOn(engine, peers, cell.from)
  const dst = await endOn(engine, peers, cell.to, src.sock)
  const ingress = cell.direction === 'ingress'
  const map: SockMap | SockHash =
    cell.map === 'sockMap' ? engine.sockMap({ maxEntries: 2 }) : engine.sockHash({ maxEntries: 2 })
  const [srcKey, dstKey] = cell.map === 'sockMap' ? [0, 1] : ['source', 'target']
  const judge = (msg: {
    socket: number
    redirect: (m: SockMap | SockHash, k: number | string, o: { ingress: boolean }) => Verdict
  }) => (msg.socket === src.sock.id ? msg.redirect(map, dstKey, { ingress }) : Verdict.PASS)
  // A stream source's bytes are framed; a datagram is one message whatever the parser.
  const parser = parsers.lengthField()
  if (cell.verdict === 'native') map.attach({ parser, verdict: rules.redirect(map, dstKey, { ingress }) })
  else if (cell.verdict === 'stream') map.attach({ parser, verdict: judge })
  else map.attach({ msgVerdict: judge })
  const arrived = ingress ? messagesN(dst.sock, Buffer.concat(messages).length) : dst.receive(messages)
  arrived.catch(() => {})
  if (cell.map === 'sockMap') {
    ;(map as SockMap).set(srcKey as number, src.sock).set(dstKey as number, dst.sock)
  } else {
    ;(map as SockHash).set(srcKey, src.sock).set(dstKey, dst.sock)
  }
  let result: Buffer[] | string
  try {
    if (cell.verdict === 'msg') {
      for (const m of messages) expect(await src.sock.send(m)).toBe(m.length)
    } else {
      await src.write(messages)
    }
    result = await arrived
  } catch (e) {
    // A code is the cell's answer; anything else is a failure, reported with where the messages went.
    result = (e as { code?: string }).code ?? `${String(e)}; source ${counts(src.sock)}; target ${counts(dst.sock)}`
  }
  await Promise.all([src.close(), dst.close()])
  return result
}

describe.skipIf(dgramFamilies.length === 0)('the datagram redirect matrix', () => {
  it(`keeps every datagram whole in each of its ${dgramCells.length} cells, or fails with its code`, async () => {
    const engine = newEngine()
    const peers = newEngine()
    const failures: string[] = []
    for (const [i, cell] of dgramCells.entries()) {
      // Sizes from 1 to 1,200 bytes, each message a frame (so a stream source splits them the same way).
      const messages = [1, 64, 700, 1200 - 4, 5].map((n, j) => frame(pattern(n, i * 8 + j)))
      const got = await runDgram(engine, peers, cell, messages)
      const want =
        unsupported(cell) ?? (cell.direction === 'egress' && cell.to === 'tcp4' ? [Buffer.concat(messages)] : messages)
      const same =
        typeof want === 'string'
          ? got === want
          : typeof got !== 'string' && got.length === want.length && got.every((g, k) => g.equals(want[k]!))
      if (!same)
        failures.push(`${JSON.stringify(cell)}: ${typeof got === 'string' ? got : got.map((g) => g.length).join(',')}`)
    }
    expect(failures).toEqual([])
  })
})
