// Real peers for the gateway tests: redis-server processes on loopback, raw RESP calls, external programs. Every
// wait here is bounded; a program that is not installed makes its tests skip with a message.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import { join } from 'node:path'

import RedisParser from 'redis-parser'

import { deadline, freePort, freePorts, programPath, until } from './helpers'

/** Warns once that tests skip because `name` is missing; true when it is installed. */
export function needs(name: string): boolean {
  if (programPath(name)) return true
  console.warn(`SKIPPED: ${name} is not installed (CI installs it: .ci/run)`)
  return false
}

/** Ports free now on loopback (for programs that cannot be told to take port 0 and report it). */
export { freePort, freePorts }

/** A RESP reply as redis-parser gives it. */
export type Reply = string | number | null | Error | Reply[]

/** Sends `commands` on one connection (pipelined) and resolves with their replies, in order. */
export async function redisCall(port: number, ...commands: string[][]): Promise<Reply[]> {
  const sock = net.connect({ host: '127.0.0.1', port })
  const replies: Reply[] = []
  const parser = new RedisParser({
    returnReply: (r: unknown) => replies.push(r as Reply),
    returnError: (e: Error) => replies.push(e),
    returnFatalError: (e: Error) => sock.destroy(e),
  })
  try {
    return await deadline(
      new Promise<Reply[]>((resolve, reject) => {
        sock.on('data', (d) => {
          parser.execute(d)
          if (replies.length === commands.length) resolve(replies)
        })
        sock.on('error', reject)
        sock.on('close', () => reject(new Error(`closed after ${replies.length} of ${commands.length} replies`)))
        sock.write(Buffer.concat(commands.map(respOf)))
      }),
      5000,
      `${commands.length} replies from port ${port}`,
    )
  } finally {
    sock.destroy()
  }
}

/** A command as a RESP array of bulk strings. */
export function respOf(args: string[]): Buffer {
  return Buffer.from(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join(''))
}

/** A redis-server on loopback. */
export interface RedisServer {
  port: number
  /** Kills it at once (SIGKILL) and waits for its exit. */
  kill(): Promise<void>
  /** Starts it again on the same port. */
  restart(): Promise<void>
  /** Stops it (for afterAll). */
  stop(): Promise<void>
}

async function spawnRedis(port: number): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'],
    { stdio: 'ignore' },
  )
  let exited = false
  child.once('exit', () => {
    exited = true
  })
  const end = Date.now() + 5000
  for (;;) {
    if (exited) throw new Error(`redis-server exited on port ${port}`)
    try {
      const [pong] = await redisCall(port, ['PING'])
      if (pong === 'PONG') return child
    } catch {
      // not yet listening
    }
    if (Date.now() > end) throw new Error(`deadline: redis-server on ${port} not up within 5000 ms`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** Starts a redis-server on a free port. */
export async function startRedis(): Promise<RedisServer> {
  let port = await freePort()
  let child: ChildProcess | undefined
  for (let tries = 0; !child; tries++) {
    try {
      child = await spawnRedis(port)
    } catch (e) {
      if (tries >= 3) throw e
      port = await freePort()
    }
  }
  const killIt = async (signal: NodeJS.Signals): Promise<void> => {
    const c = child
    if (!c || c.exitCode !== null || c.signalCode !== null) return
    const exited = once(c, 'exit')
    c.kill(signal)
    await deadline(exited, 5000, 'redis-server exit')
  }
  return {
    port,
    kill: () => killIt('SIGKILL'),
    restart: async () => {
      await killIt('SIGKILL')
      child = await spawnRedis(port)
    },
    stop: () => killIt('SIGTERM'),
  }
}

/** Waits until `cond()` holds (re-exported for the gateway tests). */
export { until }

/** A `sockmap` command run as a child process (from the TypeScript source). */
export interface CliRun {
  child: ChildProcess
  /** Everything printed so far. */
  stdout(): string
  stderr(): string
  /** Resolves with the first match of `re` in stdout (waiting for it, bounded). */
  waitFor(re: RegExp, ms?: number): Promise<RegExpMatchArray>
  /** Resolves with the exit code (bounded). */
  exited(ms?: number): Promise<number | null>
}

/** Runs `sockmap <args>` (`node --import tsx src/cli.ts`) in the repository. */
export function runCli(args: string[], cwd = join(__dirname, '..')): CliRun {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { cwd, stdio: 'pipe' })
  let out = ''
  let err = ''
  const watchers = new Set<() => void>()
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString()
    for (const w of watchers) w()
  })
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString()
  })
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    waitFor: (re, ms = 15_000) =>
      deadline(
        new Promise<RegExpMatchArray>((resolve, reject) => {
          const look = (): void => {
            const m = out.match(re)
            if (m) {
              watchers.delete(look)
              resolve(m)
            }
          }
          watchers.add(look)
          look()
          void exit.then((code) => reject(new Error(`sockmap exited (${code}) before ${re}: ${err}${out}`)))
        }),
        ms,
        `sockmap output ${re}`,
      ),
    exited: (ms = 15_000) => deadline(exit, ms, 'sockmap exit'),
  }
}
