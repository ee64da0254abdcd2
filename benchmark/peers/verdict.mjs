// The TypeScript-verdict row's policy (plain JavaScript, as `sockmap redis --verdict` loads it): FLUSHALL is refused
// with a reply, every other command is routed as the native rule would.
export default function verdict(msg, route) {
  const cmd = msg.resp?.command
  if (cmd !== undefined && cmd.length === 8 && cmd.toUpperCase() === 'FLUSHALL') {
    return msg.reply('-ERR FLUSHALL is not allowed through this gateway\r\n')
  }
  return route()
}
