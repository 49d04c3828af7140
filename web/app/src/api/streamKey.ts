// A room's stream key for OBS Studio's WHIP output (signaling/src/stream_keys.rs,
// docs/media.md "OBS Studio"): whoever may publish in the room creates, rotates and revokes it.
import { request } from './client'
import type { Id } from './types'

const V1 = '/api/v1'
const seg = (id: Id) => encodeURIComponent(String(id))

/** The answer that created a key: the only time the key is shown. */
export interface NewStreamKey {
  /** `lcsk_…` */
  key: string
  /** Relative to the server: `/whip/{room}`. */
  whip_url: string
  /** What OBS's Bearer Token field takes (the key). */
  bearer_token: string
  created_at: string
}

/** Whether the room has a key; never the key itself. */
export interface StreamKeyView {
  active: boolean
  whip_url: string
  created_by: { id: number; name: string } | null
  created_at: string | null
  last_used_at: string | null
}

export const streamKeyApi = {
  get: (room: Id) => request<StreamKeyView>('GET', `${V1}/rooms/${seg(room)}/stream-key`),
  /** Creates the key, or replaces the room's key (the old one stops working at once). */
  create: (room: Id) => request<NewStreamKey>('POST', `${V1}/rooms/${seg(room)}/stream-key`),
  revoke: (room: Id) => request<void>('DELETE', `${V1}/rooms/${seg(room)}/stream-key`),
}
