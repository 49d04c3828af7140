// The app has one language; components import `t` and read strings from it.
import zhCN from './zh-CN'

export const t = zhCN
export type { Messages } from './zh-CN'
