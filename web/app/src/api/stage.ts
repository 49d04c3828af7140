// The stage of a live class (signaling/src/stage.rs, docs/media.md): the trainees an instructor
// invited to publish their camera next to theirs (连麦上台). Changes are announced in the room
// (`stage_changed`); GET tells a newcomer who is on the stage now.
import { request } from './client'
import type { Id } from './types'

const V1 = '/api/v1'
const seg = (id: Id) => encodeURIComponent(String(id))

export interface StageView {
  stage: { id: number; name: string }[]
  /** Trainees on the stage at most. */
  max: number
}

export const stageApi = {
  get: (room: Id) => request<StageView>('GET', `${V1}/rooms/${seg(room)}/stage`),
  /** The class's instructors (and the room's host) invite a trainee: 409 when full. */
  invite: (room: Id, user: number) => request<StageView>('POST', `${V1}/rooms/${seg(room)}/stage`, { body: { user } }),
  /** An instructor takes a trainee off, or a trainee steps down (or declines). */
  end: (room: Id, user: number) => request<StageView>('DELETE', `${V1}/rooms/${seg(room)}/stage/${seg(user)}`),
}
