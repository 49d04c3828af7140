import { onBeforeUnmount, shallowRef, type ShallowRef } from 'vue'

/** The time now (Unix ms), updated every `every` ms while the component lives: for countdowns. */
export function useNow(every = 1000): ShallowRef<number> {
  const now = shallowRef(Date.now())
  const id = setInterval(() => (now.value = Date.now()), every)
  onBeforeUnmount(() => clearInterval(id))
  return now
}
