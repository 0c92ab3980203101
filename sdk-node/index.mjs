// ESM entry: the same objects as the CommonJS entry (one addon instance per thread either way).
import cjs from './index.js'

export const { Client, Run, PriceBook, AgentTallyError, VERSION, EXIT_TIMEOUT_MS } = cjs
export default cjs
