import { onMounted, ref, shallowRef, type Ref, type ShallowRef } from 'vue'
import { errorMessage } from '../api'

export interface AsyncState<T> {
  data: ShallowRef<T | null>
  error: Ref<string | null>
  loading: Ref<boolean>
  run: () => Promise<void>
}

/** Loads `fn` on mount (unless immediate is false); `run` reloads (retry buttons). */
export function useAsync<T>(fn: () => Promise<T>, immediate = true): AsyncState<T> {
  const data = shallowRef<T | null>(null)
  const error = ref<string | null>(null)
  const loading = ref(immediate)
  let generation = 0

  async function run() {
    const mine = ++generation
    loading.value = true
    error.value = null
    try {
      const v = await fn()
      if (mine === generation) data.value = v
    } catch (e) {
      if (mine === generation) error.value = errorMessage(e)
    } finally {
      if (mine === generation) loading.value = false
    }
  }

  if (immediate) onMounted(run)
  return { data, error, loading, run }
}
