// The `sockmap` command as a child process: --help per command, exit code 2 with one line on stderr for bad input,
// a running proxy from a YAML config with /metrics and /health, reload on SIGHUP without dropping a client, and a
// draining exit 0 on SIGTERM.
import { mkdtempSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { afterAll, describe, expect, it } from 'vitest'

import { deadline, netServer, portOf, readN } from './helpers'
import { runCli } from './peers'

const dir = mkdtempSync(join(tmpdir(), 'sockmap-cli-'))
const file = (name: string, text: string): string => {
  const p = join(dir, name)
  writeFileSync(p, text)
  return p
}

describe('sockmap --help', () => {
  const flags: Record<string, string[]> = {
    redis: ['upstream', 'password', 'upstream-password', 'allow', 'hash-tag', 'verdict'],
    http: ['route', 'health-path'],
    proxy: ['upstream', 'protocol', 'route', 'verdict'],
  }
  const common = ['listen', 'config', 'metrics', 'stats', 'drain-timeout', 'shards', 'backend', 'connections']
  for (const cmd of Object.keys(flags)) {
    it(`documents every flag of ${cmd}`, async () => {
      const run = runCli([cmd, '--help'])
      expect(await run.exited()).toBe(0)
      for (const f of [...(flags[cmd] as string[]), ...common, 'timeout', 'health-interval', 'help']) {
        expect(run.stdout()).toMatch(new RegExp(`^  --${f}\\b`, 'm'))
      }
    })
  }
  it('lists the commands', async () => {
    const run = runCli(['--help'])
    expect(await run.exited()).toBe(0)
    expect(run.stdout()).toMatch(/^ {2}redis .*\n {2}http .*\n {2}proxy /m)
  })
})

describe('sockmap on bad input', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['an unknown command', ['memcache'], /unknown command 'memcache'/],
    ['an unknown flag', ['redis', '--listen', ':0', '--upstream', ':1', '--bogus'], /Unknown option '--bogus'/],
    ['no --listen', ['redis', '--upstream', ':1'], /needs --listen/],
    ['no upstream', ['proxy', '--listen', ':0'], /needs at least one --upstream/],
    ['a bad port', ['proxy', '--listen', ':99999', '--upstream', ':1'], /port must be 0 to 65535/],
    ['a bad protocol', ['proxy', '--listen', ':0', '--upstream', ':1', '--protocol', 'x'], /--protocol must be/],
    ['a bad route', ['http', '--listen', ':0', '--route', 'nothing'], /--route must be HOST\/PATH=UPSTREAM/],
    ['a bad number', ['proxy', '--listen', ':0', '--upstream', ':1', '--stats', 'soon'], /--stats must be a whole/],
    ['invalid JSON', ['redis', '--config', file('bad.json', '{"listen": 1')], /not valid JSON/],
    ['invalid YAML', ['redis', '--config', file('bad.yaml', 'listen: [1')], /not valid YAML/],
    ['an unknown setting', ['proxy', '--config', file('k.yaml', 'listen: ":0"\nupstreamz: []\n')], /unknown setting/],
    ['a missing file', ['proxy', '--config', join(dir, 'none.json')], /cannot read config/],
  ]
  for (const [what, args, message] of cases) {
    it(`exits 2 with one line for ${what}`, async () => {
      const run = runCli(args)
      expect(await run.exited()).toBe(2)
      expect(run.stderr()).toMatch(message)
      expect(run.stderr().trim().split('\n')).toHaveLength(1)
      expect(run.stderr()).toMatch(/^sockmap: /)
    })
  }
})

describe('sockmap proxy (raw) from a config file', () => {
  const servers: net.Server[] = []
  afterAll(() => {
    for (const s of servers) s.close()
  })

  /** A server that answers each chunk with its name and the chunk. */
  async function named(name: string): Promise<number> {
    const srv = await netServer((s) => s.on('data', (d) => s.write(`${name}:${d.toString()}`)))
    servers.push(srv)
    return portOf(srv)
  }

  async function client(port: number): Promise<net.Socket> {
    const c = net.connect({ host: '127.0.0.1', port })
    c.setNoDelay(true)
    await deadline(new Promise((r) => c.once('connect', r)), 5000, 'client connect')
    return c
  }

  async function ask(c: net.Socket, text: string, expected: string): Promise<void> {
    c.write(text)
    expect((await readN(c, expected.length)).toString()).toBe(expected)
  }

  it('serves /metrics and /health, reloads on SIGHUP without dropping a client, exits 0 on SIGTERM', async () => {
    const [a, b] = await Promise.all([named('a'), named('b')])
    const config = file('proxy.yaml', `listen: "127.0.0.1:0"\nupstreams: ["127.0.0.1:${a}"]\nmetrics: "127.0.0.1:0"\n`)
    const run = runCli(['proxy', '--config', config, '--route', 'first', '--stats', '1'])
    try {
      const port = Number((await run.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1])
      const metricsUrl = (await run.waitFor(/metrics on (http:\/\/\S+)\/metrics/))[1] as string
      const c1 = await client(port)
      await ask(c1, 'one', 'a:one')

      const health = await fetch(`${metricsUrl}/health`)
      expect(health.status).toBe(200)
      expect(await health.text()).toBe('ok\n')
      const metrics = await (await fetch(`${metricsUrl}/metrics`)).text()
      expect(metrics).toMatch(/^sockmap_gateway_accepted_total 1$/m)
      expect(metrics).toMatch(/^sockmap_gateway_clients 1$/m)
      expect(metrics).toMatch(/^# TYPE sockmap_sockets gauge$/m)
      expect((await fetch(`${metricsUrl}/nothing`)).status).toBe(404)

      writeFileSync(config, `listen: "127.0.0.1:0"\nupstreams: ["127.0.0.1:${b}"]\nmetrics: "127.0.0.1:0"\n`)
      run.child.kill('SIGHUP')
      await run.waitFor(/reloaded /)
      const c2 = await client(port)
      await ask(c2, 'two', 'b:two')
      // The first client kept its connection and its upstream.
      await ask(c1, 'three', 'a:three')
      await run.waitFor(/stats clients=2 accepted=2/)

      // A bad config on SIGHUP keeps the running one.
      writeFileSync(config, 'listen: [')
      run.child.kill('SIGHUP')
      await deadline(
        new Promise<void>((r) => {
          const t = setInterval(() => {
            if (/reload failed/.test(run.stderr())) {
              clearInterval(t)
              r()
            }
          }, 5)
        }),
        5000,
        'reload failure reported',
      )
      await ask(c2, 'four', 'b:four')

      const closed1 = new Promise((r) => c1.once('close', r))
      run.child.kill('SIGTERM')
      expect(await run.exited()).toBe(0)
      await deadline(closed1, 5000, 'client closed by the drain')
      expect(run.stdout()).toMatch(/SIGTERM: draining/)
      expect(run.stdout()).toMatch(/stopped\n$/)
      c1.destroy()
      c2.destroy()
    } finally {
      run.child.kill('SIGKILL')
    }
  })
})
