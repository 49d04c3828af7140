// What the mall's pages share: a product's price range and stock, and a shop's quick replies
// (客服快捷回复) read as the questions and answers of its customer service.
import type { ProductView, ShopView } from '../../api/commerce'
import { yuan } from '../../utils/money'

/** "¥39.90" or "¥39.90–69.90" (cheapest to dearest spec). */
export function priceRange(p: ProductView): string {
  if (p.skus.length === 0) return ''
  const prices = p.skus.map((s) => s.price_cents)
  const min = Math.min(...prices)
  const max = Math.max(...prices)
  return min === max ? yuan(min) : `${yuan(min)}–${yuan(max).slice(1)}`
}

/** Units that can be ordered now, over every spec. */
export const totalStock = (p: ProductView) => p.skus.reduce((n, s) => n + Math.max(0, s.stock), 0)
export const totalSold = (p: ProductView) => p.skus.reduce((n, s) => n + s.sold, 0)

export interface FaqItem {
  /** "发货时间" of "发货时间：下单后 48 小时内发货", or the question of "包邮吗？全国包邮"; null for a plain answer. */
  topic: string | null
  answer: string
}

/**
 * A quick reply as a customer-service answer. Merchants often write "话题：回复" or
 * "问题？回复"; both are split when the topic is short, anything else is the answer alone.
 */
export function faqItem(reply: string): FaqItem {
  const text = reply.trim()
  const colon = /^([^：:？?\n]{1,20})[：:]\s*([\s\S]+)$/.exec(text)
  if (colon) return { topic: colon[1]!.trim(), answer: colon[2]!.trim() }
  const question = /^([^？?\n]{1,30}[？?])\s*([\s\S]+)$/.exec(text)
  if (question) return { topic: question[1]!.trim(), answer: question[2]!.trim() }
  return { topic: null, answer: text }
}

/** Open shops with listed products first, then the other open ones, closed shops last. */
export function mallOrder(a: ShopView, b: ShopView): number {
  const rank = (s: ShopView) => (s.status !== 'open' ? 2 : s.listed_products > 0 ? 0 : 1)
  return rank(a) - rank(b) || a.id - b.id
}
