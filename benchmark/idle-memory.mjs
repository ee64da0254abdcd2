// Idle connections through the TypeScript API: the RSS one proxied pair (a client's socket and its upstream's) costs
// in the process running the Engine. The proxy is what a user writes: a listener whose 'connection' handler connects
// an upstream near the client, pairs the two and puts each in a SockHash under the other's id, with a TypeScript
// verdict redirecting every message to its partner (IDLE_VERDICT=native: `rules.redirect(peers, rules.key.socket)`).
// The clients and the upstream server run in a child process, so that only the proxy's memory is measured: VmRSS and
// RssAnon (VmRSS without the pages of the node binary and libraries it maps, which running new code paths touches
// once) after a warm-up of IDLE_WARMUP pairs, then after IDLE_PAIRS more, each after IDLE_SETTLE_S idle seconds (V8
// gives back the young generation it grew while connections were being made) and full GCs, divided by IDLE_PAIRS.
// IDLE_PAIR=0 skips `pair()` (for builds without it); IDLE_DIST names another build of the package to measure.
// Bounded: it stops by itself once the figures are printed (or after IDLE_TIMEOUT_S seconds, with an error).
//
//   npm run build && node --expose-gc benchmark/idle-memory.mjs
//   (IDLE_PAIRS=5000 IDLE_WARMUP=500 IDLE_SETTLE_S=10 IDLE_VERDICT=ts|native IDLE_PAIR=1)
import { fork } from 'node:child_process'
import { readFileSync } from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const PAIRS = Number(process.env.IDLE_PAIRS ?? 5000)
const WARMUP = Number(process.env.IDLE_WARMUP ?? 500)
const VERDICT = process.env.IDLE_VERDICT ?? 'ts'
const TIMEOUT_S = Number(process.env.IDLE_TIMEOUT_S ?? 120)
const SETTLE_S = Number(process.env.IDLE_SETTLE_S ?? 10)
const PAIR = process.env.IDLE_PAIR !== '0'
const DIST = process.env.IDLE_DIST ?? fileURLToPath(new URL('../dist/', import.meta.url))

/** The peer side (child process): an upstream server holding every connection, and clients opened on request. */
async function peers() {
  const held = []
  const upstream = net.createServer((s) => {
    s.on('error', () => {})
    held.push(s)
  })
  await new Promise((r) => upstream.listen(0, '127.0.0.1', r))
  process.send({ upstream: upstream.address().port })
  process.on('message', async ({ connect, port }) => {
    let open = 0
    const batch = 64
    for (let i = 0; i < connect; i += batch) {
      await Promise.all(
        Array.from(
          { length: Math.min(batch, connect - i) },
          () =>
            new Promise((resolve, reject) => {
              const c = net.connect({ host: '127.0.0.1', port }, () => resolve())
              c.on('error', reject)
              held.push(c)
              open++
            }),
        ),
      )
    }
    process.send({ connected: open })
  })
  process.on('disconnect', () => process.exit(0))
}

/** VmRSS and RssAnon of this process, in KiB. */
function rssKiB() {
  const status = readFileSync('/proc/self/status', 'utf8')
  const field = (name) => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)[1])
  return { rss: field('VmRSS'), anon: field('RssAnon') }
}

async function settledRss(idleMs = 0) {
  await new Promise((r) => setTimeout(r, idleMs))
  for (let i = 0; i < 3; i++) {
    globalThis.gc?.()
    await new Promise((r) => setTimeout(r, 50))
  }
  return rssKiB()
}

async function proxy() {
  const { Engine, rules } = await import(pathToFileURL(join(DIST, 'index.mjs')).href)
  const timer = setTimeout(() => {
    console.error(`idle-memory: not done within ${TIMEOUT_S} s`)
    process.exit(1)
  }, TIMEOUT_S * 1000)
  const child = fork(fileURLToPath(import.meta.url), ['--peers'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const next = () => new Promise((r) => child.once('message', r))
  const { upstream } = await next()
  const engine = new Engine({ shards: 1 })
  const peers = engine.sockHash({ maxEntries: 1 << 16 })
  peers.attach({
    verdict: VERDICT === 'native' ? rules.redirect(peers, rules.key.socket) : (msg) => msg.redirect(peers, msg.socket),
  })
  const server = await engine.listen({ host: '127.0.0.1', port: 0 })
  let paired = 0
  let waiting
  server.on('connection', (client) => {
    engine.connect({ host: '127.0.0.1', port: upstream, near: client }).then((up) => {
      if (PAIR) client.pair(up)
      peers.set(client.id, up).set(up.id, client)
      if (++paired === waiting?.n) waiting.resolve()
    })
  })
  const open = async (n) => {
    const target = paired + n
    const done = new Promise((resolve) => (waiting = { n: target, resolve }))
    child.send({ connect: n, port: server.address().port })
    await next()
    await done
  }
  await open(WARMUP)
  const before = await settledRss(SETTLE_S * 1000)
  const heapBefore = process.memoryUsage()
  await open(PAIRS)
  const after = await settledRss(SETTLE_S * 1000)
  const heapAfter = process.memoryUsage()
  const kib = (k) => (after[k] - before[k]) / PAIRS
  const per = (k) => Math.round((heapAfter[k] - heapBefore[k]) / PAIRS)
  console.log(
    `idle pairs through the TypeScript API (${VERDICT} verdict${PAIR ? ', paired' : ''}): ${PAIRS} pairs, ` +
      `VmRSS ${(before.rss / 1024).toFixed(1)} → ${(after.rss / 1024).toFixed(1)} MiB: ${kib('rss').toFixed(2)} KiB ` +
      `per pair; RssAnon ${kib('anon').toFixed(2)} KiB per pair; JS heap ${per('heapUsed')} bytes used, ` +
      `${per('heapTotal')} committed per pair`,
  )
  clearTimeout(timer)
  child.disconnect()
  await engine.close()
}

if (process.argv.includes('--peers')) await peers()
else await proxy()
