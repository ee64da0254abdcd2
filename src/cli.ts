#!/usr/bin/env node
/**
 * The `sockmap` command: a Redis sharding gateway, an HTTP/1 router or a TCP proxy from flags or a config file
 * (JSON or YAML), with Prometheus metrics, a health endpoint, periodic stats, reload on SIGHUP and a draining exit on
 * SIGTERM.
 *
 * Invariants: a bad flag, value or config file prints one line on stderr and exits with code 2 before anything
 * listens; once running, a failed reload is reported and the running configuration stays; SIGTERM and SIGINT close
 * the gateway within `--drain-timeout` and exit 0.
 *
 * @module
 */
import { readFileSync } from 'node:fs'
import http from 'node:http'
import { extname, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs, type ParseArgsConfig } from 'node:util'

import { parse as parseYaml } from 'yaml'

import type { EngineOptions } from './engine'
import { parseHostPort, type HostPort } from './gateway/address'
import type { Gateway, GatewayOptions } from './gateway/base'
import { HttpRouter, type HttpRoute } from './gateway/http'
import type { HealthCheckOptions, UpstreamSpec } from './gateway/pool'
import { TcpProxy, type ProxyProtocol, type ProxyRoute } from './gateway/proxy'
import { RedisGateway, type RedisPolicy } from './gateway/redis'
import type { LengthFieldOptions } from './parsers'

/** A usage error: reported on one line, exit code 2. */
class UsageError extends Error {}

type Command = 'redis' | 'http' | 'proxy'

interface FlagDoc {
  name: string
  arg?: string
  multiple?: boolean
  doc: string
}

const common: FlagDoc[] = [
  { name: 'listen', arg: 'HOST:PORT', doc: 'where clients connect (port 0: any free port, printed at start)' },
  { name: 'config', arg: 'FILE', doc: 'read the settings from FILE.json or FILE.yaml (flags given win over it)' },
  { name: 'metrics', arg: 'HOST:PORT', doc: 'serve Prometheus metrics on /metrics and a health check on /health' },
  { name: 'stats', arg: 'SECONDS', doc: 'print one line of counters every SECONDS' },
  { name: 'drain-timeout', arg: 'SECONDS', doc: 'on SIGTERM, wait at most this long for requests in flight (10)' },
  { name: 'shards', arg: 'N|auto', doc: 'I/O threads of the engine (1)' },
  { name: 'backend', arg: 'auto|epoll|io_uring', doc: 'the I/O backend (auto)' },
  { name: 'connections', arg: 'N', doc: 'upstream connections per server per shard (1)' },
  { name: 'timeout', arg: 'MS', doc: 'a request not answered within MS gets an error reply (engine default)' },
  { name: 'max-pending', arg: 'N', doc: 'most requests of one client in flight (engine default)' },
  { name: 'health-interval', arg: 'MS', doc: 'time between health checks of a server; 0: no checks (1000)' },
  { name: 'health-timeout', arg: 'MS', doc: 'longest a health check waits (1000)' },
  { name: 'failures', arg: 'N', doc: 'consecutive failures that eject a server from the ring (3)' },
  { name: 'help', doc: 'print this help' },
]

const specific: Record<Command, FlagDoc[]> = {
  redis: [
    { name: 'upstream', arg: 'HOST:PORT', multiple: true, doc: 'a Redis server (repeat, or separate with commas)' },
    { name: 'password', arg: 'PASSWORD', doc: 'clients must AUTH with PASSWORD' },
    { name: 'upstream-password', arg: 'PASSWORD', doc: 'the gateway AUTHs with PASSWORD on each server' },
    { name: 'allow', arg: 'CMD', multiple: true, doc: 'forward a command refused by default, e.g. KEYS (repeat)' },
    { name: 'hash-tag', arg: 'XY', doc: "hash only what is between X and Y in keys ('{}'; '' for none)" },
    {
      name: 'verdict',
      arg: 'FILE',
      doc: 'a policy verdict: the default export of a .js file, or of a .ts file (with tsx installed)',
    },
  ],
  http: [
    {
      name: 'route',
      arg: 'HOST/PATH=UPSTREAM,...',
      multiple: true,
      doc: 'requests for HOST (any if empty) under PATH go to the UPSTREAMs (repeat; first match wins)',
    },
    { name: 'health-path', arg: 'PATH', doc: 'the path health checks GET (/)' },
  ],
  proxy: [
    { name: 'upstream', arg: 'HOST:PORT', multiple: true, doc: 'an upstream server (repeat, or separate with commas)' },
    {
      name: 'protocol',
      arg: 'raw|lines|length[:OPTS]|resp|http1',
      doc: 'raw proxies connections; a framing proxies messages (length:N or length:key=value,...) (raw)',
    },
    { name: 'route', arg: 'hash|first|round-robin', doc: 'how an upstream is chosen per connection or message (hash)' },
    {
      name: 'verdict',
      arg: 'FILE',
      doc: 'a verdict (message mode): the default export of a .js file, or of a .ts file (with tsx installed)',
    },
  ],
}

const summaries: Record<Command, string> = {
  redis: 'a Redis sharding gateway: keys hashed (ketama, {hash tags}) over the upstream servers',
  http: 'an HTTP/1 router: requests routed by Host and path prefix to pools of upstream servers',
  proxy: 'a TCP proxy: connections (raw) or framed messages, routed to upstream servers',
}

function usage(cmd?: Command): string {
  if (!cmd) {
    return [
      'usage: sockmap <command> [flags]',
      '',
      'commands:',
      ...(Object.keys(summaries) as Command[]).map((c) => `  ${c.padEnd(7)} ${summaries[c]}`),
      '',
      "run 'sockmap <command> --help' for its flags.",
      '',
      'signals: SIGHUP reloads --config (upstreams, routes, allowed commands, verdict) without dropping clients;',
      'SIGTERM drains the requests in flight (at most --drain-timeout) and exits 0.',
      'exit codes: 0 after SIGTERM, 1 on a runtime failure, 2 on a bad flag or config.',
    ].join('\n')
  }
  const flags = [...specific[cmd], ...common]
  const lines = flags.map((f) => {
    const left = `  --${f.name}${f.arg ? ` ${f.arg}` : ''}`
    return left.length < 34 ? `${left.padEnd(34)} ${f.doc}` : `${left}\n${''.padEnd(35)}${f.doc}`
  })
  const example: Record<Command, string> = {
    redis: 'sockmap redis --listen 127.0.0.1:6380 --upstream 127.0.0.1:7001 --upstream 127.0.0.1:7002',
    http: 'sockmap http --listen :8080 --route api.example.com/v1=10.0.0.1:80,10.0.0.2:80 --route /=10.0.0.3:80',
    proxy: 'sockmap proxy --listen :5000 --upstream 10.0.0.1:5000 --protocol length:4 --route round-robin',
  }
  return [
    `usage: sockmap ${cmd} [flags]`,
    '',
    summaries[cmd],
    '',
    'flags:',
    ...lines,
    '',
    'example:',
    `  ${example[cmd]}`,
  ].join('\n')
}

/** The settings of a run, as a config file writes them (camelCase keys). */
export interface CliConfig {
  listen?: string
  upstreams?: UpstreamSpec[]
  routes?: Array<string | HttpRoute>
  password?: string
  upstreamPassword?: string
  allow?: string[]
  hashTag?: string
  verdict?: string
  protocol?: string
  route?: string
  healthPath?: string
  metrics?: string
  stats?: number
  drainTimeout?: number
  shards?: number | 'auto'
  backend?: 'auto' | 'epoll' | 'io_uring'
  connections?: number
  timeoutMs?: number
  maxPending?: number
  healthCheck?: HealthCheckOptions | false
  failures?: number
}

const configKeys: Record<Command, string[]> = {
  redis: ['upstreams', 'password', 'upstreamPassword', 'allow', 'hashTag', 'verdict'],
  http: ['routes', 'healthPath'],
  proxy: ['upstreams', 'protocol', 'route', 'verdict'],
}
const commonKeys = [
  'listen',
  'metrics',
  'stats',
  'drainTimeout',
  'shards',
  'backend',
  'connections',
  'timeoutMs',
  'maxPending',
  'healthCheck',
  'failures',
]

/** Reads a config file. @throws {UsageError} */
function readConfig(cmd: Command, file: string): CliConfig {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (e) {
    throw new UsageError(`cannot read config ${file}: ${(e as Error).message}`)
  }
  let data: unknown
  try {
    data = /\.ya?ml$/i.test(file) ? parseYaml(text) : JSON.parse(text)
  } catch (e) {
    throw new UsageError(
      `config ${file} is not valid ${/\.ya?ml$/i.test(file) ? 'YAML' : 'JSON'}: ${(e as Error).message.split('\n')[0]}`,
    )
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new UsageError(`config ${file} must be an object of settings`)
  }
  const allowed = new Set([...commonKeys, ...configKeys[cmd]])
  for (const k of Object.keys(data)) {
    if (!allowed.has(k)) throw new UsageError(`config ${file}: unknown setting '${k}' for 'sockmap ${cmd}'`)
  }
  return data as CliConfig
}

function intFlag(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined
  if (!/^\d+$/.test(v)) throw new UsageError(`--${name} must be a whole number, got '${v}'`)
  const n = Number(v)
  if (n < min || n > max) throw new UsageError(`--${name} must be ${min} to ${max}, got ${n}`)
  return n
}

function list(values: string[] | undefined): string[] | undefined {
  return values?.flatMap((v) => v.split(',')).filter((v) => v !== '')
}

/** Parses `HOST/PATH=UP,UP`. */
export function parseRoute(text: string): HttpRoute {
  const eq = text.indexOf('=')
  if (eq < 0) throw new UsageError(`--route must be HOST/PATH=UPSTREAM,..., got '${text}'`)
  const target = text.slice(0, eq)
  const upstreams = text
    .slice(eq + 1)
    .split(',')
    .filter((u) => u !== '')
  if (upstreams.length === 0) throw new UsageError(`--route '${text}' names no upstream`)
  const slash = target.indexOf('/')
  const host = slash < 0 ? target : target.slice(0, slash)
  const path = slash < 0 ? '' : target.slice(slash)
  const route: HttpRoute = { upstreams }
  if (host !== '') route.host = host
  if (path !== '' && path !== '/') route.pathPrefix = path
  return route
}

/** Parses `raw|lines|resp|http1|length[:N|:k=v,...]`. */
export function parseProtocol(text: string): ProxyProtocol {
  if (text === 'raw' || text === 'lines' || text === 'resp' || text === 'http1') return text
  const m = /^length(?::(.*))?$/.exec(text)
  if (!m) throw new UsageError(`--protocol must be raw, lines, length[:OPTS], resp or http1, got '${text}'`)
  const opts = m[1]
  if (opts === undefined || opts === '') return { kind: 'length' }
  if (/^\d+$/.test(opts)) return { kind: 'length', options: { lengthFieldLength: Number(opts) as 4 } }
  const options: Record<string, unknown> = {}
  for (const kv of opts.split(',')) {
    const [k, v] = kv.split('=')
    if (!k || v === undefined) throw new UsageError(`--protocol length options must be key=value, got '${kv}'`)
    options[k] = /^-?\d+$/.test(v) ? Number(v) : v === 'true' ? true : v === 'false' ? false : v
  }
  return { kind: 'length', options: options as LengthFieldOptions }
}

async function loadVerdict(file: string): Promise<RedisPolicy> {
  const path = resolve(file)
  let mod: { default?: unknown; verdict?: unknown }
  try {
    if (['.ts', '.mts', '.cts'].includes(extname(path))) {
      const { tsImport } = (await import('tsx/esm/api')) as {
        tsImport: (specifier: string, parent: string) => Promise<{ default?: unknown; verdict?: unknown }>
      }
      mod = await tsImport(pathToFileURL(path).href, pathToFileURL(__filename).href)
    } else {
      mod = (await import(pathToFileURL(path).href)) as { default?: unknown; verdict?: unknown }
    }
  } catch (e) {
    throw new UsageError(`cannot load verdict ${file}: ${(e as Error).message.split('\n')[0]}`)
  }
  let fn = mod.default ?? mod.verdict
  if (typeof fn === 'object' && fn !== null && 'default' in fn) fn = (fn as { default: unknown }).default
  if (typeof fn !== 'function') throw new UsageError(`verdict ${file} must export a function (default or 'verdict')`)
  return fn as RedisPolicy
}

interface Parsed {
  cmd: Command
  config: CliConfig
  configFile: string | undefined
}

function parse(argv: string[]): Parsed | 'help' {
  const [first, ...rest] = argv
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    if (rest[0] && rest[0] in summaries) throw Object.assign(new Error('help'), { cmd: rest[0] })
    return 'help'
  }
  if (!(first in summaries)) throw new UsageError(`unknown command '${first}' (redis, http or proxy)`)
  const cmd = first as Command
  const flags = [...specific[cmd], ...common]
  const options: ParseArgsConfig['options'] = {}
  for (const f of flags) {
    options[f.name] = { type: f.arg ? 'string' : 'boolean', ...(f.multiple ? { multiple: true } : {}) }
  }
  let values: Record<string, unknown>
  try {
    ;({ values } = parseArgs({ args: rest, options, strict: true, allowPositionals: false }))
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/\. To specify.*$/, '').replace(/\n.*/s, ''))
  }
  if (values.help) throw Object.assign(new Error('help'), { cmd })
  const s = (k: string): string | undefined => values[k] as string | undefined
  const m = (k: string): string[] | undefined => values[k] as string[] | undefined
  const configFile = s('config')
  const config: CliConfig = configFile ? readConfig(cmd, configFile) : {}
  const set = <K extends keyof CliConfig>(k: K, v: CliConfig[K] | undefined): void => {
    if (v !== undefined) config[k] = v
  }
  set('listen', s('listen'))
  set('metrics', s('metrics'))
  set('stats', intFlag('stats', s('stats'), 1, 86_400))
  set('drainTimeout', intFlag('drain-timeout', s('drain-timeout'), 0, 86_400))
  const shards = s('shards')
  set('shards', shards === 'auto' ? 'auto' : intFlag('shards', shards, 1, 256))
  const backend = s('backend')
  if (backend !== undefined && !['auto', 'epoll', 'io_uring'].includes(backend)) {
    throw new UsageError(`--backend must be auto, epoll or io_uring, got '${backend}'`)
  }
  set('backend', backend as CliConfig['backend'])
  set('connections', intFlag('connections', s('connections'), 1, 64))
  set('timeoutMs', intFlag('timeout', s('timeout'), 1, 3_600_000))
  set('maxPending', intFlag('max-pending', s('max-pending'), 1, 1 << 20))
  set('failures', intFlag('failures', s('failures'), 1, 1000))
  const interval = intFlag('health-interval', s('health-interval'), 0, 3_600_000)
  const htimeout = intFlag('health-timeout', s('health-timeout'), 1, 600_000)
  if (interval === 0) config.healthCheck = false
  else if (interval !== undefined || htimeout !== undefined) {
    const base = config.healthCheck === false ? {} : (config.healthCheck ?? {})
    config.healthCheck = {
      ...base,
      ...(interval !== undefined ? { intervalMs: interval } : {}),
      ...(htimeout !== undefined ? { timeoutMs: htimeout } : {}),
    }
  }
  if (cmd === 'redis' || cmd === 'proxy') set('upstreams', list(m('upstream')))
  if (cmd === 'redis') {
    set('password', s('password'))
    set('upstreamPassword', s('upstream-password'))
    set('allow', list(m('allow')))
    set('hashTag', s('hash-tag'))
  }
  if (cmd === 'redis' || cmd === 'proxy') set('verdict', s('verdict'))
  if (cmd === 'http') {
    set('routes', m('route'))
    set('healthPath', s('health-path'))
  }
  if (cmd === 'proxy') {
    set('protocol', s('protocol'))
    set('route', s('route'))
  }
  return { cmd, config, configFile }
}

/** Checks what every run needs. @throws {UsageError} */
function required(cmd: Command, c: CliConfig): void {
  if (c.listen === undefined) throw new UsageError(`sockmap ${cmd} needs --listen HOST:PORT`)
  if (cmd !== 'http' && (c.upstreams === undefined || c.upstreams.length === 0)) {
    throw new UsageError(`sockmap ${cmd} needs at least one --upstream HOST:PORT`)
  }
  if (cmd === 'http' && (c.routes === undefined || c.routes.length === 0)) {
    throw new UsageError('sockmap http needs at least one --route HOST/PATH=UPSTREAM')
  }
  if (c.metrics !== undefined) parseOr('metrics', c.metrics)
  parseOr('listen', c.listen)
}

function parseOr(name: string, v: unknown): HostPort {
  try {
    return parseHostPort(`--${name}`, v)
  } catch (e) {
    throw new UsageError((e as Error).message)
  }
}

function routesOf(c: CliConfig): HttpRoute[] {
  return (c.routes ?? []).map((r) => (typeof r === 'string' ? parseRoute(r) : r))
}

async function build(cmd: Command, c: CliConfig): Promise<Gateway> {
  const engineOptions: EngineOptions = {}
  if (c.shards !== undefined) engineOptions.shards = c.shards
  if (c.backend !== undefined) engineOptions.backend = c.backend
  const base: GatewayOptions = { listen: c.listen as string, engineOptions }
  if (c.connections !== undefined) base.connections = c.connections
  if (c.timeoutMs !== undefined) base.timeoutMs = c.timeoutMs
  if (c.maxPending !== undefined) base.maxPending = c.maxPending
  if (c.healthCheck !== undefined) base.healthCheck = c.healthCheck
  if (c.failures !== undefined) base.failures = c.failures
  const verdict = c.verdict !== undefined ? await loadVerdict(c.verdict) : undefined
  try {
    if (cmd === 'redis') {
      return new RedisGateway({
        ...base,
        upstreams: c.upstreams as UpstreamSpec[],
        ...(c.password !== undefined ? { password: c.password } : {}),
        ...(c.upstreamPassword !== undefined ? { upstreamPassword: c.upstreamPassword } : {}),
        ...(c.allow !== undefined ? { allow: c.allow } : {}),
        ...(c.hashTag !== undefined ? { hashTag: c.hashTag } : {}),
        ...(verdict ? { verdict } : {}),
      })
    }
    if (cmd === 'http') {
      return new HttpRouter({ ...base, routes: routesOf(c), ...(c.healthPath ? { healthPath: c.healthPath } : {}) })
    }
    const route = c.route ?? 'hash'
    if (!['hash', 'first', 'round-robin'].includes(route)) {
      throw new UsageError(`--route must be hash, first or round-robin, got '${route}'`)
    }
    return new TcpProxy({
      ...base,
      upstreams: c.upstreams as UpstreamSpec[],
      protocol: parseProtocol(c.protocol ?? 'raw'),
      route: route as ProxyRoute,
      ...(verdict ? { verdict } : {}),
    })
  } catch (e) {
    if (e instanceof TypeError || e instanceof RangeError || e instanceof UsageError) throw new UsageError(e.message)
    throw e
  }
}

async function reload(gw: Gateway, c: CliConfig): Promise<void> {
  if (gw instanceof RedisGateway) {
    const verdict = c.verdict !== undefined ? await loadVerdict(c.verdict) : null
    await gw.reload({ ...(c.upstreams ? { upstreams: c.upstreams } : {}), allow: c.allow ?? [], verdict })
  } else if (gw instanceof HttpRouter) {
    await gw.reload({ routes: routesOf(c) })
  } else if (gw instanceof TcpProxy) {
    if (c.upstreams) await gw.reload({ upstreams: c.upstreams })
  }
}

function statsLine(gw: Gateway): string {
  const s = gw.stats()
  const r = s.requests as unknown as Record<string, number>
  const counters = ['messagesIn', 'requests', 'replies', 'errorReplies', 'dropped', 'bytesIn', 'bytesOut']
    .filter((k) => r[k] !== undefined)
    .map((k) => `${k}=${r[k]}`)
  const ups = s.upstreams.map((u) => `${u.server}:${u.up ? 'up' : 'down'}`).join(',')
  return `stats clients=${s.clients} accepted=${s.accepted} ${counters.join(' ')}${ups ? ` upstreams=${ups}` : ''}`
}

function healthy(gw: Gateway): boolean {
  const ups = gw.stats().upstreams
  const pools = new Map<string, boolean>()
  for (const u of ups) pools.set(u.pool, (pools.get(u.pool) ?? false) || u.up)
  return [...pools.values()].every(Boolean)
}

async function serveMetrics(gw: Gateway, at: HostPort): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    if (path === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' })
      res.end(gw.metrics())
    } else if (path === '/health') {
      const ok = healthy(gw)
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' })
      res.end(ok ? 'ok\n' : 'no upstream server up\n')
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' })
      res.end('not found: try /metrics or /health\n')
    }
  })
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject)
    server.listen(at.port, at.host, () => resolveListen())
  })
  return server
}

/** Runs the command; resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  let parsed: Parsed | 'help'
  try {
    parsed = parse(argv)
    if (parsed !== 'help') required(parsed.cmd, parsed.config)
  } catch (e) {
    const cmd = (e as { cmd?: Command }).cmd
    if ((e as Error).message === 'help' && cmd) {
      process.stdout.write(usage(cmd) + '\n')
      return 0
    }
    if (e instanceof UsageError) {
      process.stderr.write(`sockmap: ${e.message}\n`)
      return 2
    }
    throw e
  }
  if (parsed === 'help') {
    process.stdout.write(usage() + '\n')
    return 0
  }
  const { cmd, config, configFile } = parsed
  let gw: Gateway
  try {
    gw = await build(cmd, config)
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`sockmap: ${e.message}\n`)
      return 2
    }
    process.stderr.write(`sockmap: ${(e as Error).message}\n`)
    return 1
  }
  gw.on('up', (s, pool) => process.stdout.write(`upstream ${s} up (${pool})\n`))
  gw.on('down', (s, reason, pool) => process.stdout.write(`upstream ${s} down (${pool}): ${reason}\n`))
  let metrics: http.Server | undefined
  try {
    const at = await gw.listen()
    process.stdout.write(`sockmap ${cmd} listening on ${at.host}:${at.port}\n`)
    if (config.metrics !== undefined) {
      metrics = await serveMetrics(gw, parseHostPort('--metrics', config.metrics))
      const a = metrics.address() as { address: string; port: number }
      process.stdout.write(`metrics on http://${a.address}:${a.port}/metrics\n`)
    }
  } catch (e) {
    process.stderr.write(`sockmap: ${(e as Error).message}\n`)
    await gw.close({ drainMs: 0 }).catch(() => {})
    return 1
  }
  const timer =
    config.stats !== undefined
      ? setInterval(() => process.stdout.write(statsLine(gw) + '\n'), config.stats * 1000)
      : undefined
  let current = config
  const onHup = (): void => {
    if (!configFile) {
      process.stdout.write('SIGHUP: no --config to reload\n')
      return
    }
    void (async () => {
      try {
        const next = readConfig(cmd, configFile)
        await reload(gw, { ...current, ...next })
        current = { ...current, ...next }
        process.stdout.write(`reloaded ${configFile}\n`)
      } catch (e) {
        process.stderr.write(`sockmap: reload failed, keeping the running configuration: ${(e as Error).message}\n`)
      }
    })()
  }
  process.on('SIGHUP', onHup)
  return new Promise<number>((done) => {
    let stopping = false
    const stop = (signal: string): void => {
      if (stopping) return
      stopping = true
      const drainMs = (current.drainTimeout ?? 10) * 1000
      process.stdout.write(`${signal}: draining (at most ${drainMs / 1000} s)\n`)
      clearInterval(timer)
      process.off('SIGHUP', onHup)
      void gw
        .close({ drainMs })
        .then(() => new Promise((r) => (metrics ? metrics.close(r) : r(undefined))))
        .then(() => {
          process.stdout.write('stopped\n')
          done(0)
        })
        .catch((e: unknown) => {
          process.stderr.write(`sockmap: ${(e as Error).message}\n`)
          done(1)
        })
    }
    process.once('SIGTERM', () => stop('SIGTERM'))
    process.once('SIGINT', () => stop('SIGINT'))
  })
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`sockmap: ${(e as Error).stack ?? String(e)}\n`)
      process.exit(1)
    },
  )
}
