// The sockmap demo: a Redis sharding gateway in front of two Redis servers, with a TypeScript policy verdict,
// measured against the same load sent directly to one Redis and through a plain Node proxy.
//
//   load client ──RESP──▶ sockmap RedisGateway ──key:1, key:7...──▶ redis A
//   (worker thread)       (TS policy: FLUSHALL   └─key:2, key:3...──▶ redis B
//                          refused, rest routed)
//
// Two real redis-servers are started on free ports when `redis-server` is installed; otherwise two embedded RESP
// backends written in TypeScript stand in (and the demo says so). Every request gets exactly one reply, in order;
// the final table must show 0 errors, or the demo exits 1.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import net from 'node:net'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'

import { RedisGateway, Verdict, type GatewayMessage } from '../src/index'
import { respBackend } from './resp-backend'

const DURATION_MS = Number(process.env.DEMO_DURATION_MS ?? 3000)
const CONNS = Number(process.env.DEMO_CONNECTIONS ?? 32)
const KEYS = 10_000

interface Backend {
  name: string
  port: number
  stop: () => void
}

interface Result {
  path: string
  ops: number
  errors: number
  firstError: string | undefined
  seconds: number
  latencies: number[]
  shards: string
}

function installed(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

async function freePort(): Promise<number> {
  const srv = net.createServer().listen(0, '127.0.0.1')
  await new Promise((r) => srv.once('listening', r))
  const port = (srv.address() as net.AddressInfo).port
  await new Promise((r) => srv.close(r))
  return port
}

/** One raw RESP command on its own connection; resolves with the reply's text. */
function call(port: number, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port })
    let got = ''
    const timer = setTimeout(() => {
      sock.destroy()
      reject(new Error(`no reply to ${args[0]} on ${port}`))
    }, 3000)
    sock.on('connect', () => sock.write(`*${args.length}\r\n${args.map((a) => `$${a.length}\r\n${a}\r\n`).join('')}`))
    sock.on('data', (d) => {
      got += d.toString()
      if (got.endsWith('\r\n')) {
        clearTimeout(timer)
        sock.destroy()
        resolve(got.trimEnd())
      }
    })
    sock.on('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
  })
}

async function redisServer(name: string): Promise<Backend> {
  const port = await freePort()
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  )
  const end = Date.now() + 5000
  for (;;) {
    if ((await call(port, ['PING']).catch(() => '')) === '+PONG') break
    if (Date.now() > end) throw new Error(`redis-server ${name} did not start on port ${port}`)
    await new Promise((r) => setTimeout(r, 20))
  }
  return { name, port, stop: () => child.kill('SIGKILL') }
}

async function backends(): Promise<{ list: Backend[]; kind: string }> {
  if (installed('redis-server')) {
    return { list: await Promise.all([redisServer('A'), redisServer('B')]), kind: 'two real redis-servers' }
  }
  const list = await Promise.all(
    ['A', 'B'].map(async (name) => {
      const b = await respBackend()
      return { name, port: b.port, stop: b.close }
    }),
  )
  return { list, kind: 'two embedded RESP backends (redis-server is not installed: apt-get install redis-server)' }
}

/** A plain Node TCP proxy to one backend: node:net sockets piped both ways. */
async function nodeProxy(port: number): Promise<{ port: number; close: () => void }> {
  const server = net.createServer((client) => {
    const up = net.connect({ host: '127.0.0.1', port })
    client.setNoDelay(true)
    up.setNoDelay(true)
    client.pipe(up).pipe(client)
    const done = (): void => {
      client.destroy()
      up.destroy()
    }
    client.on('error', done)
    up.on('error', done)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() }
}

function load(worker: Worker, path: string, port: number, shards: () => Promise<string>): Promise<Result> {
  const started = Date.now()
  let ticks = 0
  return new Promise((resolve) => {
    const onMessage = (m: {
      type: string
      ops: number
      errors: number
      firstError?: string
      latencies?: number[]
    }): void => {
      const secs = (Date.now() - started) / 1000
      if (m.type === 'progress') {
        const line = `  ${path.padEnd(34)} ${String(m.ops).padStart(9)} ops  ${Math.round(m.ops / secs)
          .toLocaleString('en')
          .padStart(9)} ops/s  ${m.errors} errors`
        if (process.stdout.isTTY) process.stdout.write(`\r${line} `)
        else if (++ticks % 4 === 0) console.log(line)
        return
      }
      worker.off('message', onMessage)
      if (process.stdout.isTTY) process.stdout.write('\n')
      void shards().then((s) =>
        resolve({
          path,
          ops: m.ops,
          errors: m.errors,
          firstError: m.firstError,
          seconds: secs,
          latencies: m.latencies ?? [],
          shards: s,
        }),
      )
    }
    worker.on('message', onMessage)
    worker.postMessage({ type: 'run', port, durationMs: DURATION_MS, conns: CONNS, keys: KEYS })
  })
}

function pct(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : (sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN)
}

/** The policy: FLUSHALL and KEYS are refused with a reply; every other command is routed by its key. */
function policy(msg: GatewayMessage, route: () => Verdict): Verdict {
  const cmd = msg.resp?.command.toUpperCase()
  if (cmd === 'FLUSHALL' || cmd === 'KEYS') return msg.reply(`-ERR ${cmd} is not allowed through this gateway\r\n`)
  return route()
}

async function main(): Promise<void> {
  const { list, kind } = await backends()
  const [a, b] = list as [Backend, Backend]
  console.log(
    `sockmap demo: a Redis sharding gateway over ${kind} (ports ${a.port}, ${b.port});\n` +
      `${CONNS} connections of small GET/SET, ${DURATION_MS / 1000} s per path\n`,
  )
  const worker = new Worker(join(__dirname, 'redis-load.mjs'))
  const results: Result[] = []
  const dbsize = async (): Promise<string> => {
    const sizes = await Promise.all(list.map((x) => call(x.port, ['DBSIZE'])))
    return list.map((x, i) => `${x.name} ${(sizes[i] ?? '').replace(/^:/, '')}`).join(' / ')
  }
  const flush = (): Promise<unknown> => Promise.all(list.map((x) => call(x.port, ['FLUSHALL'])))
  try {
    await flush()
    results.push(await load(worker, 'direct to redis A', a.port, dbsize))

    await flush()
    const upstreams = [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`]
    const gw = new RedisGateway({ listen: '127.0.0.1:0', upstreams, verdict: policy })
    const at = await gw.listen()
    const path = 'sockmap gateway (A + B, TS policy)'
    const refused = await call(at.port, ['FLUSHALL'])
    results.push(await load(worker, path, at.port, dbsize))
    const s = gw.stats()
    await gw.close({ drainMs: 1000 })
    console.log(`  FLUSHALL through the gateway: ${refused}`)
    const counters = s.requests as unknown as Record<string, number | undefined>
    if (counters.requests !== undefined) {
      console.log(
        `  gateway counters: ${counters.requests} requests, ${counters.replies ?? 0} replies, ${counters.localReplies ?? 0} local, ${counters.errorReplies ?? 0} error replies`,
      )
    }

    await flush()
    const proxy = await nodeProxy(a.port)
    results.push(await load(worker, 'node:net proxy to redis A', proxy.port, dbsize))
    proxy.close()
  } finally {
    await worker.terminate()
    for (const x of list) x.stop()
  }

  console.log()
  console.table(
    results.map((r) => {
      const lat = [...r.latencies].sort((x, y) => x - y)
      return {
        path: r.path,
        'ops/s': Math.round(r.ops / r.seconds).toLocaleString('en'),
        'p50 µs': (pct(lat, 50) / 1e3).toFixed(0),
        'p99 µs': (pct(lat, 99) / 1e3).toFixed(0),
        'keys per shard': r.shards,
        errors: r.errors,
      }
    }),
  )
  const bad = results.filter((r) => r.errors > 0 || r.ops === 0)
  for (const r of bad) console.error(`${r.path}: ${r.errors} errors, ${r.ops} ops (first error: ${r.firstError})`)
  if (bad.length > 0) process.exitCode = 1
}

main().catch((err: unknown) => {
  console.error(err)
  process.exitCode = 1
})
