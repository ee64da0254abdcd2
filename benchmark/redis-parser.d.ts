// Minimal typings of the redis-parser package, for the framer comparison benchmark.
declare module 'redis-parser' {
  interface RedisParserOptions {
    returnReply: (reply: unknown) => void
    returnError: (err: Error) => void
    returnFatalError?: (err: Error) => void
    returnBuffers?: boolean
    stringNumbers?: boolean
  }
  export default class RedisParser {
    constructor(options: RedisParserOptions)
    execute(data: Buffer): void
    reset(): void
  }
}
