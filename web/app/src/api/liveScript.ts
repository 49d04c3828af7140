// AI live scripts (直播脚本, commerce/src/script.rs): generate from my products and planned
// selling tools — streamed as Server-Sent Events while the model writes, or written by the
// built-in template — then keep every edited version. Times are Unix milliseconds, money cents.
import { ApiError, CSRF_HEADER, csrfToken, request, statusFallback, toApiError } from './client'
import type { Id, Ref } from './types'
import { t } from '../i18n'

const V1 = '/api/v1'
const seg = (id: Id) => encodeURIComponent(String(id))

/** One product's part of the show. */
export interface ScriptSegment {
  product_id: number | null
  product: string
  selling_points: string[]
  /** 讲解话术 */
  talk: string
  interaction: string[]
  activity_cue: string | null
  duration_minutes: number
}

export interface LiveScript {
  title: string
  opening: string
  segments: ScriptSegment[]
  closing: string
}

/** A selling tool planned for the show (`Activity` in rules.rs, tagged by `kind`). */
export type PlannedActivity =
  | { kind: 'flash_sale'; product_id: number; price_cents: number; stock: number; per_user_limit?: number | null }
  | { kind: 'red_packet'; total_cents: number; count: number; greeting?: string | null }
  | { kind: 'coupon'; title?: string | null; threshold_cents: number; discount_cents: number; total_quota?: number | null }
  | {
      kind: 'lucky_bag'
      prize: string
      winners: number
      keyword?: string | null
      duration_seconds?: number | null
      /** Minutes to watch for a watch bag (then no keyword). */
      watch_minutes?: number | null
    }

export type ActivityKind = PlannedActivity['kind']

export interface GenerateScript {
  product_ids: number[]
  activities: PlannedActivity[]
  duration_minutes: number
  audience?: string
  room_id?: number
  /** Write with the built-in template even when a model is configured. */
  template?: boolean
}

export type Generator = 'llm' | 'template' | 'manual'

export interface GeneratedScript {
  script: LiveScript
  generator: Generator
  model: string | null
  /** Which generator wrote it, for people. */
  note: string
}

export interface ScriptSummary {
  id: number
  owner: Ref
  room_id: number | null
  title: string
  generator: Generator
  model: string | null
  latest_version: number
  mine: boolean
  created_at: number
  updated_at: number
}

export interface VersionInfo {
  version: number
  created_at: number
}

export interface ScriptDetail extends ScriptSummary {
  script: LiveScript
  /** Oldest first. */
  versions: VersionInfo[]
}

export interface ScriptVersion {
  script_id: number
  version: number
  created_at: number
  script: LiveScript
}

export interface SaveScript {
  title?: string
  script: LiveScript
  generator: Generator
  model?: string | null
  room_id?: number
}

export interface EditScript {
  title?: string
  script: LiveScript
  /** The version the edit started from (409 when a newer one was saved meanwhile). */
  base_version?: number
}

/** What the generation stream reports as it goes. */
export interface GenerateHandlers {
  onStart?: (generator: Generator, model: string | null) => void
  onDelta?: (text: string) => void
}

/** One `event:`/`data:` block of a Server-Sent Events stream. */
interface SseEvent {
  event: string
  data: string
}

/** Splits complete blocks off `buffer`; returns them and what is left. */
export function parseSse(buffer: string): { events: SseEvent[]; rest: string } {
  const events: SseEvent[] = []
  const text = buffer.replace(/\r\n?/g, '\n')
  let start = 0
  for (;;) {
    const end = text.indexOf('\n\n', start)
    if (end < 0) break
    const block = text.slice(start, end)
    start = end + 2
    let event = 'message'
    const data: string[] = []
    for (const line of block.split('\n')) {
      if (!line || line.startsWith(':')) continue
      const colon = line.indexOf(':')
      const field = colon < 0 ? line : line.slice(0, colon)
      let value = colon < 0 ? '' : line.slice(colon + 1)
      if (value.startsWith(' ')) value = value.slice(1)
      if (field === 'event') event = value
      else if (field === 'data') data.push(value)
    }
    if (data.length) events.push({ event, data: data.join('\n') })
  }
  return { events, rest: text.slice(start) }
}

/**
 * Generates a script with streaming: `start`, `delta`… then `done` (resolves) or `error`
 * (rejects with the server's message). Ordinary error answers (400/404/502/504) reject too.
 */
export async function generateScript(
  body: GenerateScript,
  handlers: GenerateHandlers = {},
  signal?: AbortSignal,
): Promise<GeneratedScript> {
  const headers: Record<string, string> = { Accept: 'text/event-stream', 'Content-Type': 'application/json' }
  const token = csrfToken()
  if (token) headers[CSRF_HEADER] = token
  let res: Response
  try {
    res = await fetch(`${V1}/live-scripts/generate`, {
      method: 'POST',
      credentials: 'same-origin',
      headers,
      body: JSON.stringify({ ...body, stream: true }),
      signal,
    })
  } catch (e) {
    if (e instanceof DOMException && e.name === 'AbortError') throw e
    throw new ApiError(0, 'network_error', t.errors.network)
  }
  if (!res.ok) throw await toApiError(res)
  // A server that answered JSON after all (no streaming).
  if (!(res.headers.get('Content-Type') ?? '').includes('text/event-stream')) {
    return (await res.json()) as GeneratedScript
  }
  if (!res.body) throw new ApiError(0, 'network_error', t.errors.network)

  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ''
  try {
    for (;;) {
      let chunk: ReadableStreamReadResult<string>
      try {
        chunk = await reader.read()
      } catch (e) {
        if (e instanceof DOMException && e.name === 'AbortError') throw e
        throw new ApiError(0, 'network_error', t.errors.network)
      }
      if (chunk.value) buffer += chunk.value
      // At the end, a last block without its blank line still counts.
      const parsed = parseSse(chunk.done ? `${buffer}\n\n` : buffer)
      buffer = parsed.rest
      for (const ev of parsed.events) {
        let data: unknown
        try {
          data = JSON.parse(ev.data)
        } catch {
          continue
        }
        const d = data as Record<string, unknown>
        if (ev.event === 'start') {
          handlers.onStart?.((d.generator as Generator) ?? 'template', (d.model as string | null) ?? null)
        } else if (ev.event === 'delta') {
          if (typeof d.text === 'string') handlers.onDelta?.(d.text)
        } else if (ev.event === 'done') {
          return data as GeneratedScript
        } else if (ev.event === 'error') {
          const code = typeof d.code === 'string' ? d.code : 'llm_error'
          const message = typeof d.message === 'string' && d.message ? d.message : statusFallback(502)
          throw new ApiError(502, code, message)
        }
      }
      if (chunk.done) break
    }
  } finally {
    reader.releaseLock()
  }
  throw new ApiError(0, 'stream_ended', t.liveScript.streamEnded)
}

export const liveScriptApi = {
  generate: generateScript,
  list: () => request<ScriptSummary[]>('GET', `${V1}/live-scripts`),
  get: (id: Id) => request<ScriptDetail>('GET', `${V1}/live-scripts/${seg(id)}`),
  version: (id: Id, version: number) =>
    request<ScriptVersion>('GET', `${V1}/live-scripts/${seg(id)}/versions/${seg(version)}`),
  save: (body: SaveScript) => request<ScriptDetail>('POST', `${V1}/live-scripts`, { body }),
  edit: (id: Id, body: EditScript) => request<ScriptDetail>('PUT', `${V1}/live-scripts/${seg(id)}`, { body }),
}
