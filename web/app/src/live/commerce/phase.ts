import type { FlashSaleCard } from '../../api/protocol'

export type SalePhase = 'upcoming' | 'running' | 'sold_out' | 'ended'

/** Where a flash sale is at `now` (server ms). */
export function salePhase(card: FlashSaleCard, now: number, ended: boolean): SalePhase {
  if (ended || now >= card.ends_at) return 'ended'
  if (now < card.starts_at) return 'upcoming'
  if (card.remaining <= 0) return 'sold_out'
  return 'running'
}

/** hex → bytes (null when malformed). */
function hexBytes(hex: string): Uint8Array<ArrayBuffer> | null {
  if (!/^[0-9a-fA-F]*$/.test(hex) || hex.length % 2) return null
  const out = new Uint8Array(new ArrayBuffer(hex.length / 2))
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16)
  return out
}

/**
 * Whether SHA-256 of the seed's bytes is the commitment published at launch; null when this
 * browser cannot compute it (no WebCrypto outside secure contexts).
 */
export async function verifySeed(seedHex: string, commitmentHex: string): Promise<boolean | null> {
  const subtle = globalThis.crypto?.subtle
  const bytes = hexBytes(seedHex)
  if (!subtle || !bytes) return null
  try {
    const digest = new Uint8Array(await subtle.digest('SHA-256', bytes))
    const hex = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('')
    return hex === commitmentHex.toLowerCase()
  } catch {
    return null
  }
}
