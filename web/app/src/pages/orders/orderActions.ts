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
        return ['confirm', 'refund']
      case 'completed':
        return ['refund']
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
    default:
      return []
  }
}

/** The main action of the list (drawn as the primary button). */
export const PRIMARY: readonly OrderAction[] = ['pay', 'ship', 'confirm', 'approve-refund']

/** Actions that take a reason: required for a refund request, optional for a rejection. */
export const WITH_REASON: readonly OrderAction[] = ['refund', 'reject-refund']

export function statusBadge(status: OrderStatus): string {
  switch (status) {
    case 'pending_payment':
      return 'badge-warning'
    case 'paid':
    case 'shipped':
      return 'badge-info'
    case 'completed':
      return 'badge-success'
    case 'refund_requested':
      return 'badge-danger'
    default:
      return ''
  }
}
