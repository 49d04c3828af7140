import type { OrderAction, OrderSide, OrderStatus } from '../../api/commerce'

/** What each side may do to an order in each status (commerce/src/core/order.rs). */
export function actionsFor(side: OrderSide, status: OrderStatus): OrderAction[] {
  if (side === 'buyer') {
    switch (status) {
      case 'pending_payment':
        return ['pay', 'cancel']
      case 'paid':
        return ['refund']
      case 'shipped':
        return ['confirm', 'return', 'refund']
      case 'completed':
        return ['return', 'refund']
      case 'refund_requested':
      case 'return_requested':
        return ['withdraw']
      case 'return_approved':
        return ['ship-return', 'withdraw']
      default:
        return []
    }
  }
  switch (status) {
    case 'pending_payment':
      return ['cancel']
    case 'paid':
      return ['ship']
    case 'refund_requested':
      return ['approve-refund', 'reject-refund']
    case 'return_requested':
      return ['approve-return', 'reject-return']
    case 'return_shipped':
      return ['confirm-return']
    default:
      return []
  }
}

/** The main action of the list (drawn as the primary button). */
export const PRIMARY: readonly OrderAction[] = ['pay', 'ship', 'confirm', 'approve-refund', 'approve-return', 'ship-return', 'confirm-return']

/** Actions that take a reason: required for a refund or return request, optional otherwise
 *  (for `approve-return` it carries the merchant's return address). */
export const WITH_REASON: readonly OrderAction[] = ['refund', 'reject-refund', 'return', 'approve-return', 'reject-return']

/** Actions whose reason is required. */
export const REASON_REQUIRED: readonly OrderAction[] = ['refund', 'return']

/** Actions after which the wallet balance has changed. */
export const MOVES_MONEY: readonly OrderAction[] = ['pay', 'confirm', 'approve-refund', 'confirm-return']

export function statusBadge(status: OrderStatus): string {
  switch (status) {
    case 'pending_payment':
    case 'return_approved':
      return 'badge-warning'
    case 'paid':
    case 'shipped':
      return 'badge-info'
    case 'completed':
      return 'badge-success'
    case 'refund_requested':
    case 'return_requested':
    case 'return_shipped':
      return 'badge-danger'
    default:
      return ''
  }
}
