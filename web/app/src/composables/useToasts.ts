// App-wide transient messages ("已保存", a server's refusal) for pages outside the live room
// (which has its own). Rendered by components/ToastHost.vue in App.vue.
import { reactive } from 'vue'

export type ToastKind = 'success' | 'error' | 'info'

export interface AppToast {
  id: number
  kind: ToastKind
  text: string
}

export const appToasts = reactive<AppToast[]>([])
let seq = 0

export function toast(text: string, kind: ToastKind = 'success'): void {
  const id = ++seq
  appToasts.push({ id, kind, text })
  if (appToasts.length > 4) appToasts.shift()
  setTimeout(() => dismissToast(id), kind === 'error' ? 6000 : 3500)
}

export function dismissToast(id: number): void {
  const i = appToasts.findIndex((x) => x.id === id)
  if (i >= 0) appToasts.splice(i, 1)
}
