// Every default the TSDoc states is the engine's: the `Default: ...` phrase of each option is read out of the
// doc comments in src/*.ts and compared with nativeDefaults(), so a doc that drifts from the engine fails here.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

import { describe, expect, it } from 'vitest'

import { statsFields } from '../src/binding.cjs'
import { Verdict, nativeDefaults } from '../src/index'
import { clientOf, engineScope, listening, until } from './helpers'

const srcDir = join(__dirname, '..', 'src')

/** The scatter-gather ring (`SgRing`) is a separate API with its own defaults, checked by its own tests. */
const skipped = new Set(['ring.ts'])

/** `Interface.member` → the text of its `Default: ...` phrase, for every documented default in src/*.ts. */
function documentedDefaults(): Map<string, string> {
  const out = new Map<string, string>()
  for (const file of readdirSync(srcDir).filter((f) => f.endsWith('.ts') && !skipped.has(f))) {
    const text = readFileSync(join(srcDir, file), 'utf8')
    for (const iface of text.matchAll(/export interface (\w+)[^{]*\{([\s\S]*?)\n\}/g)) {
      const [, name, body] = iface as unknown as [string, string, string]
      for (const member of body.matchAll(/\/\*\*([\s\S]*?)\*\/\s*(?:readonly\s+)?(\w+)\??:/g)) {
        const [, doc, field] = member as unknown as [string, string, string]
        const flat = doc.replace(/\n\s*\*\s?/g, ' ').replace(/\s+/g, ' ')
        const m = /Default: (.*?)\.(?:\s|$)/.exec(flat)
        if (m) out.set(`${name}.${field}`, (m[1] as string).trim())
      }
    }
  }
  return out
}

const units: Record<string, number> = { KiB: 1 << 10, MiB: 1 << 20 }

/** The value a `Default: ...` phrase states. */
function valueOf(phrase: string): unknown {
  const code = /^`([^`]+)`/.exec(phrase)
  if (code) {
    const v = code[1] as string
    if (/^'.*'$/.test(v)) return v.slice(1, -1)
    if (v === 'true' || v === 'false') return v === 'true'
    if (v.startsWith('Verdict.')) return Verdict[v.slice('Verdict.'.length) as keyof typeof Verdict]
    if (/^-?\d+$/.test(v)) return Number(v)
  }
  const sized = /^(\d+) (KiB|MiB)(?: \((\d+)\))?$/.exec(phrase)
  if (sized) {
    const n = Number(sized[1]) * (units[sized[2] as string] as number)
    if (sized[3] !== undefined) expect(Number(sized[3]), `${phrase}: both forms agree`).toBe(n)
    return n
  }
  if (/^(none|no limit)\b/.test(phrase)) return undefined
  throw new Error(`cannot read the default '${phrase}'`)
}

describe('defaults', () => {
  const d = nativeDefaults()

  /** The engine's default of each documented option. */
  const engine: Record<string, unknown> = {
    'BatchOptions.maxMessages': d.engine.maxMessages,
    'BatchOptions.maxDelayMicros': d.engine.maxDelayMicros,
    'BatchOptions.maxInFlight': d.engine.maxInFlight,
    'BatchOptions.verdictTimeoutMs': d.engine.verdictTimeoutMs,
    'EngineOptions.sendHighWatermark': d.engine.sendHighWatermark,
    'EngineOptions.sendLowWatermark': d.engine.sendLowWatermark,
    'EngineOptions.appHighWatermark': d.engine.appHighWatermark,
    'EngineOptions.maxPendingBytes': d.engine.maxPendingBytes,
    'EngineOptions.readBudget': d.engine.readBudget,
    'EngineOptions.backend': d.engine.backend,
    'EngineOptions.readBuffer': d.engine.readBuffer,
    'EngineOptions.recvBuffers': d.engine.recvBuffers,
    'EngineOptions.shards': d.engine.shards,
    'EngineOptions.drive': d.engine.drive,
    'EngineOptions.dgramQueueBytes': d.engine.dgramQueueBytes,
    'EngineOptions.dgramQueueDatagrams': d.engine.dgramQueueDatagrams,
    'SessionsOptions.idleTimeoutMs': d.sessions.idleTimeoutMs,
    'SessionsOptions.maxSessions': d.sessions.maxSessions,
    'UdpBindOptions.host': d.host,
    'UdpConnectOptions.host': d.host,
    'TcpListenOptions.host': d.host,
    'TcpListenOptions.backlog': d.backlog,
    'UnixListenOptions.backlog': d.backlog,
    'TcpConnectOptions.host': d.host,
    'AttachOptions.peekBytes': d.peekBytes,
    'ParserLimits.maxMessageBytes': d.maxMessageBytes,
    'ParserLimits.messageTimeoutMs': d.messageTimeoutMs,
    'LengthFieldOptions.byteOrder': d.lengthField.byteOrder,
    'LengthFieldOptions.lengthFieldOffset': d.lengthField.lengthFieldOffset,
    'LengthFieldOptions.lengthFieldLength': d.lengthField.lengthFieldLength,
    'LengthFieldOptions.lengthAdjustment': d.lengthField.lengthAdjustment,
    'LengthFieldOptions.initialBytesToStrip': d.lengthField.initialBytesToStrip,
    'LengthFieldOptions.maxFrameLength': d.lengthField.maxFrameLength,
    'LengthFieldOptions.failFast': d.lengthField.failFast,
    'LengthFieldOptions.discardOversize': d.lengthField.discardOversize,
    'DelimiterOptions.maxLength': d.delimiter.maxLength,
    'DelimiterOptions.stripDelimiter': d.delimiter.stripDelimiter,
    'DelimiterOptions.discardOversize': d.delimiter.discardOversize,
    'LinesOptions.maxLength': d.lines.maxLength,
    'LinesOptions.stripDelimiter': d.lines.stripDelimiter,
    'LinesOptions.discardOversize': d.lines.discardOversize,
    'RespOptions.maxDepth': d.resp.maxDepth,
    'RespOptions.maxLineLength': d.resp.maxLineLength,
    'Http1Options.role': d.http1.role,
    'Http1Options.maxHeaderBytes': d.http1.maxHeaderBytes,
    'PairOptions.onClose': d.pairOnClose,
    'RequestsOptions.timeoutMs': d.requests.timeoutMs,
    'RequestsOptions.maxPending': d.requests.maxPending,
    'SetOptions.weight': d.entryWeight,
    'TlsServerOptions.handshakeTimeoutMs': d.tlsHandshakeTimeoutMs,
    'TlsConnectOptions.handshakeTimeoutMs': d.tlsHandshakeTimeoutMs,
  }

  /** Defaults of the TypeScript API itself, with no engine counterpart. */
  const api: Record<string, unknown> = {
    'ConnectCommonOptions.timeoutMs': undefined,
    'AttachOptions.onError': Verdict.DROP,
    'SetOptions.flag': 'any',
    'RedirectOptions.ingress': false,
    'TlsConnectOptions.insecure': false,
    'UdpConnectOptions.localPort': 0,
  }

  it('states each engine default as the engine defines it', () => {
    const docs = documentedDefaults()
    for (const [key, phrase] of docs) {
      expect(key in engine || key in api, `${key} ('${phrase}') is checked by this test`).toBe(true)
      const want = key in engine ? engine[key] : api[key]
      expect(valueOf(phrase), `${key}: 'Default: ${phrase}'`).toStrictEqual(want)
    }
    // And nothing in the tables has lost its doc.
    expect([...docs.keys()].sort()).toEqual([...Object.keys(engine), ...Object.keys(api)].sort())
  })

  it('reports every engine and batch default', () => {
    expect(Object.keys(d.engine).sort()).toEqual(
      [
        'appHighWatermark',
        'backend',
        'dgramQueueBytes',
        'dgramQueueDatagrams',
        'drive',
        'maxDelayMicros',
        'maxInFlight',
        'maxMessages',
        'maxPendingBytes',
        'readBudget',
        'readBuffer',
        'recvBuffers',
        'sendHighWatermark',
        'sendLowWatermark',
        'shards',
        'verdictTimeoutMs',
      ].sort(),
    )
    const { backend, drive, ...sizes } = d.engine
    expect(backend).toBe('auto')
    expect(drive).toBe('threads')
    for (const v of Object.values(sizes)) expect(Number.isInteger(v) && (v as number) >= 0).toBe(true)
    expect(d.lines.delimiters?.map((b) => b.toString())).toEqual(['\r\n', '\n'])
    expect(d.lines.stripDelimiter).toBe(true)
  })
})

describe('stats fields', () => {
  const { newEngine, clients } = engineScope()

  /** The members of `interface SocketStats` in src/stats.ts. */
  function documentedStats(): string[] {
    const text = readFileSync(join(srcDir, 'stats.ts'), 'utf8')
    const body = /export interface SocketStats \{([\s\S]*?)\n\}/.exec(text)?.[1] ?? ''
    return [...body.matchAll(/^\s+(\w+): number$/gm)].map((m) => m[1] as string)
  }

  it('SocketStats has the engine counters plus redirected, and stats() reports exactly those', async () => {
    const want = [...statsFields(), 'redirected'].sort()
    expect(documentedStats().sort()).toEqual(want)
    const engine = newEngine()
    const server = await listening(engine)
    const { client, sock } = await clientOf(server)
    clients.push(client)
    sock.resume()
    client.write('hello')
    await until(() => sock.stats().bytesIn === 5, 5000, 'bytesIn 5')
    const s = sock.stats()
    expect(Object.keys(s).sort()).toEqual(want)
    expect(s.redirected).toBe(s.redirectedEgress + s.redirectedIngress)
    expect(Object.keys(engine.stats().totals).sort()).toEqual(want)
  })
})
