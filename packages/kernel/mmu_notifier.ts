/**
 * MMU notifiers: secondary MMUs (an IOMMU sharing a process page table through SVA) hear about
 * changes to an mm's page table — `arch_invalidate_secondary_tlbs` after PTEs were cleared or
 * changed and before the pages go back to the allocator, `release` when the address space is
 * torn down while they still use it. Mirrors mm/mmu_notifier.c (the parts SVA drivers use).
 *
 * @module
 */
import { Errno } from "./errno.ts";
import { mmdrop, mmgrab, type MmStruct } from "./mm.ts";
import { kmalloc } from "./slab.ts";

/** struct mmu_notifier_ops: what a secondary MMU is told. */
export interface MmuNotifierOps {
  /**
   * The address space is going away while the subscription is registered (its last user
   * exited, or the subscription is unregistered): stop using the page table now.
   */
  release?(subscription: MmuNotifier, mm: MmStruct): void;
  /**
   * PTEs of `[start, end)` changed (cleared, or permissions changed): invalidate the secondary
   * TLBs before the old pages are reused.
   */
  arch_invalidate_secondary_tlbs?(
    subscription: MmuNotifier,
    mm: MmStruct,
    start: number,
    end: number,
  ): void;
}

/** struct mmu_notifier: one subscription of a secondary MMU to an mm. */
export class MmuNotifier {
  /** The mm it is registered on, or null. */
  mm: MmStruct | null = null;

  /** A subscription with `ops`; see {@linkcode mmu_notifier_register}. */
  constructor(readonly ops: MmuNotifierOps) {}
}

/** struct mmu_notifier_subscriptions: an mm's registered notifiers, allocated on first use. */
export class MmuNotifierSubscriptions {
  /** Registered subscriptions, in registration order. */
  readonly list: MmuNotifier[] = [];
}

/**
 * Mirrors mmu_notifier_register(): subscribes `subscription` to `mm`, taking a reference on the
 * structure (mmgrab). EBUSY when the subscription is registered already, EINVAL when `mm` has
 * exited, ENOMEM when the mm's subscription list cannot be allocated.
 */
export function mmu_notifier_register(subscription: MmuNotifier, mm: MmStruct): void {
  if (subscription.mm !== null) throw new Errno("EBUSY", "The notifier is registered already");
  if (mm.mm_users === 0) throw new Errno("EINVAL", "The address space has exited");
  mm.notifier_subscriptions ??= kmalloc(mm.kernel, new MmuNotifierSubscriptions());
  mmgrab(mm);
  mm.notifier_subscriptions.list.push(subscription);
  subscription.mm = mm;
}

/**
 * Mirrors mmu_notifier_unregister(): when `mm` has not released the subscription yet, calls its
 * `release` and removes it; then drops the reference register took. EINVAL when it was never
 * registered on `mm`.
 */
export function mmu_notifier_unregister(subscription: MmuNotifier, mm: MmStruct): void {
  if (subscription.mm !== mm) throw new Errno("EINVAL", "The notifier is not registered here");
  const list = mm.notifier_subscriptions?.list ?? [];
  const i = list.indexOf(subscription);
  if (i >= 0) {
    subscription.ops.release?.(subscription, mm);
    list.splice(i, 1);
  }
  subscription.mm = null;
  mmdrop(mm);
}

/**
 * Mirrors mmu_notifier_arch_invalidate_secondary_tlbs(): tells every subscriber that the PTEs
 * of `[start, end)` changed. The architecture's TLB flush calls it.
 */
export function mmu_notifier_arch_invalidate_secondary_tlbs(
  mm: MmStruct,
  start: number,
  end: number,
): void {
  const list = mm.notifier_subscriptions?.list;
  if (list === undefined) return;
  for (let i = 0; i < list.length; i++) {
    list[i].ops.arch_invalidate_secondary_tlbs?.(list[i], mm, start, end);
  }
}

/**
 * Mirrors __mmu_notifier_release(): the mm's last user exited; each subscription is taken off
 * the list and told (`release`), before the page tables are freed. Unregistering it later only
 * drops its reference.
 */
export function __mmu_notifier_release(mm: MmStruct): void {
  const list = mm.notifier_subscriptions?.list;
  if (list === undefined) return;
  while (list.length !== 0) {
    const subscription = list.shift()!;
    subscription.ops.release?.(subscription, mm);
  }
}
