// Native framers vs what a Node user would use today, side by side in one run, on the same in-memory streams.
//
//   npm run bench:framers
//
// The native rows come from `cargo bench -p sockmap-core --bench framers` (StrParser + framer on the engine's I/O
// thread: no JavaScript at all), run by this script; the JS rows parse identical streams (same frame generators, same
// 64 KiB chunks) with a straightforward length-prefix decoder, split2, redis-parser and Node's own HTTP parser.
import { execFileSync } from 'node:child_process'

import RedisParser from 'redis-parser'
import split2 from 'split2'

const CHUNK = 64 << 10
const STREAM_BYTES = 32 << 20
const SAMPLES = 5

const pad = (n: number, width: number): string => String(n).padStart(width, '0')

const frames: Record<string, (i: number) => Buffer> = {
  length: () => {
    const b = Buffer.alloc(64, 'x')
    b.writeUInt32BE(60, 0)
    return b
  },
  lines: (i) => Buffer.from(`line ${pad(i, 10)} `.padEnd(63, '.') + '\n'),
  resp: (i) => Buffer.from(`*3\r\n$3\r\nSET\r\n$8\r\nkey:${pad(i % 10_000, 4)}\r\n$5\r\nvalue\r\n`),
  http: (i) =>
    Buffer.from(
      `GET /item/${pad(i % 10_000, 4)} HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n`,
    ),
}

function stream(kind: string): { chunks: Buffer[]; n: number; bytes: number } {
  const make = frames[kind]
  if (make === undefined) throw new Error(`unknown stream ${kind}`)
  const parts: Buffer[] = []
  let bytes = 0
  let n = 0
  while (bytes < STREAM_BYTES) {
    const f = make(n++)
    parts.push(f)
    bytes += f.length
  }
  const all = Buffer.concat(parts)
  const chunks: Buffer[] = []
  for (let off = 0; off < all.length; off += CHUNK) chunks.push(all.subarray(off, Math.min(all.length, off + CHUNK)))
  return { chunks, n, bytes: all.length }
}

/** A straightforward length-prefix decoder: keep the tail, concat with the next chunk, slice each frame. */
function jsLength(chunks: Buffer[]): number {
  let pending: Buffer = Buffer.alloc(0)
  let count = 0
  for (const chunk of chunks) {
    const buf = pending.length ? Buffer.concat([pending, chunk]) : chunk
    let off = 0
    while (buf.length - off >= 4) {
      const len = buf.readUInt32BE(off)
      if (buf.length - off < 4 + len) break
      const frame = buf.subarray(off + 4, off + 4 + len)
      if (frame.length === len) count++
      off += 4 + len
    }
    pending = buf.subarray(off)
  }
  return count
}

function jsSplit2(chunks: Buffer[]): number {
  let count = 0
  const s = split2()
  s.on('data', () => count++)
  for (const chunk of chunks) s.write(chunk)
  s.end()
  return count
}

function jsRedisParser(chunks: Buffer[]): number {
  let count = 0
  const parser = new RedisParser({
    returnReply: () => count++,
    returnError: () => {
      throw new Error('redis-parser: unexpected error reply')
    },
    returnBuffers: true,
  })
  for (const chunk of chunks) parser.execute(chunk)
  return count
}

interface NodeHttpParser {
  initialize(type: number, resource: object): void
  execute(data: Buffer): number | Error
  [key: number]: unknown
}
interface NodeHttpParserClass {
  new (): NodeHttpParser
  REQUEST: number
  kOnHeadersComplete: number
  kOnMessageComplete: number
}
const { HTTPParser } = (process as unknown as { binding(name: string): { HTTPParser: NodeHttpParserClass } }).binding(
  'http_parser',
)

function jsNodeHttp(chunks: Buffer[]): number {
  let count = 0
  const p = new HTTPParser()
  p.initialize(HTTPParser.REQUEST, {})
  p[HTTPParser.kOnHeadersComplete] = () => 0
  p[HTTPParser.kOnMessageComplete] = () => {
    count++
  }
  for (const chunk of chunks) {
    const r = p.execute(chunk)
    if (r instanceof Error) throw r
  }
  return count
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] ?? NaN
}

function measure(fn: (chunks: Buffer[]) => number, data: { chunks: Buffer[]; n: number }): number {
  if (fn(data.chunks) !== data.n) throw new Error(`${fn.name}: wrong frame count`)
  const times: number[] = []
  for (let i = 0; i < SAMPLES; i++) {
    const t0 = process.hrtime.bigint()
    fn(data.chunks)
    times.push(Number(process.hrtime.bigint() - t0) / 1e9)
  }
  return data.n / median(times)
}

function nativeRates(): Map<string, number> {
  const out = execFileSync('cargo', ['bench', '-q', '-p', 'sockmap-core', '--bench', 'framers'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const rates = new Map<string, number>()
  for (const line of out.split('\n')) {
    const m = /^(.+?)\s{2,}(\d+)\s+(\d+)\s+([\d.]+)$/.exec(line.trim())
    if (m?.[1] !== undefined && m[3] !== undefined) rates.set(m[1], Number(m[3]))
  }
  return rates
}

const rows: Array<[string, string, string, (chunks: Buffer[]) => number]> = [
  ['length', 'length-prefixed 64 B', 'JS length-prefix decoder', jsLength],
  ['lines', 'lines 64 B', 'split2', jsSplit2],
  ['resp', 'RESP SET key:NNNN value', 'redis-parser', jsRedisParser],
  ['http', 'HTTP/1 GET', "Node's HTTP parser (llhttp)", jsNodeHttp],
]

const native = nativeRates()
console.log('| stream | native frames/s | JS peer | JS frames/s | native ÷ JS |')
console.log('| --- | ---: | --- | ---: | ---: |')
for (const [kind, nativeName, peer, fn] of rows) {
  const js = measure(fn, stream(kind))
  const nat = native.get(nativeName)
  const ratio = nat === undefined ? 'n/a' : `${(nat / js).toFixed(1)}×`
  const fmt = (x: number | undefined): string => (x === undefined ? 'n/a' : `${(x / 1e6).toFixed(2)} M`)
  console.log(`| ${nativeName} | ${fmt(nat)} | ${peer} | ${fmt(js)} | ${ratio} |`)
}
