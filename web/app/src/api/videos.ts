// Product short videos (短视频, commerce/src/videos.rs): the raw file is uploaded as the request
// body (XHR, for upload progress), transcoded on the server to an H.264/AAC MP4 with a JPEG
// cover; poll the video until it is `ready` or `failed` (`error` is an English code, worded by
// t.videos.errors).
import { ApiError, CSRF_HEADER, csrfToken, request, statusFallback } from './client'
import type { Id } from './types'
import { t } from '../i18n'

const V1 = '/api/v1'
const seg = (id: Id) => encodeURIComponent(String(id))

/** A ready video, as products and the room's shelf carry it. */
export interface VideoSummary {
  id: number
  duration_ms: number
  width: number
  height: number
  /** The MP4 (range requests). */
  file_url: string
  /** The JPEG cover. */
  cover_url: string
}

export type VideoStatus = 'processing' | 'ready' | 'failed'

export interface VideoView {
  id: number
  product_id: number
  status: VideoStatus
  source_bytes: number
  bytes: number | null
  duration_ms: number | null
  width: number | null
  height: number | null
  has_audio: boolean | null
  /** When failed: video_unsupported | video_undecodable | video_too_long | video_too_short | video_timeout | interrupted | internal */
  error: string | null
  file_url: string | null
  cover_url: string | null
  created_at: number
  ready_at: number | null
}

export interface ProductVideos {
  videos: VideoView[]
  max_bytes: number
  max_seconds: number
  max_videos: number
}

/** The summary of a ready video (null while it is not). */
export function readySummary(v: VideoView): VideoSummary | null {
  if (v.status !== 'ready' || !v.file_url || !v.cover_url) return null
  return {
    id: v.id,
    duration_ms: v.duration_ms ?? 0,
    width: v.width ?? 0,
    height: v.height ?? 0,
    file_url: v.file_url,
    cover_url: v.cover_url,
  }
}

/** Chinese words for a failed video's `error` code. */
export function videoErrorText(code: string | null): string {
  return (code && t.videos.errors[code]) || t.videos.errors.unknown!
}

export interface UploadOptions {
  /** 0…1 of the file sent. */
  onProgress?: (fraction: number) => void
  signal?: AbortSignal
}

/** Uploads `file` as the raw body; resolves with the video `processing`. */
export function uploadVideo(product: Id, file: Blob, opts: UploadOptions = {}): Promise<VideoView> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest()
    xhr.open('POST', `${V1}/products/${seg(product)}/videos`)
    xhr.setRequestHeader('Accept', 'application/json')
    // The server wants video/* or octet-stream; some systems give .mov or .mkv no type at all.
    xhr.setRequestHeader('Content-Type', file.type.startsWith('video/') ? file.type : 'application/octet-stream')
    const token = csrfToken()
    if (token) xhr.setRequestHeader(CSRF_HEADER, token)
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable && e.total > 0) opts.onProgress?.(e.loaded / e.total)
    }
    xhr.onload = () => {
      let body: unknown = null
      try {
        body = xhr.responseText ? JSON.parse(xhr.responseText) : null
      } catch {
        // not JSON (a proxy's error page): the status decides
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(body as VideoView)
        return
      }
      const err = (body ?? {}) as { code?: unknown; message?: unknown }
      reject(
        new ApiError(
          xhr.status,
          typeof err.code === 'string' ? err.code : `http_${xhr.status}`,
          typeof err.message === 'string' && err.message ? err.message : statusFallback(xhr.status),
        ),
      )
    }
    xhr.onerror = () => reject(new ApiError(0, 'network_error', t.errors.network))
    xhr.onabort = () => reject(new DOMException('upload cancelled', 'AbortError'))
    if (opts.signal) {
      if (opts.signal.aborted) {
        reject(new DOMException('upload cancelled', 'AbortError'))
        return
      }
      opts.signal.addEventListener('abort', () => xhr.abort(), { once: true })
    }
    xhr.send(file)
  })
}

export const videosApi = {
  /** All of a product's videos for its owner (with their state); the ready ones for others. */
  list: (product: Id) => request<ProductVideos>('GET', `${V1}/products/${seg(product)}/videos`),
  get: (id: Id) => request<VideoView>('GET', `${V1}/videos/${seg(id)}`),
  remove: (id: Id) => request<void>('DELETE', `${V1}/videos/${seg(id)}`),
  upload: uploadVideo,
}

/** A clip's length as m:ss (rounded to the second, at least 0:01). */
export function videoLength(ms: number): string {
  const total = Math.max(1, Math.round(ms / 1000))
  return `${Math.floor(total / 60)}:${String(total % 60).padStart(2, '0')}`
}
