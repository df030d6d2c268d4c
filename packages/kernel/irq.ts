/**
 * The irq layer: virq numbers, irq domains (wired lines and an MSI parent), `request_irq` /
 * `request_threaded_irq` with shared lines and IRQF_ONESHOT, enable/disable depth, and MSI
 * allocation for devices.
 *
 * The machine (or a test) creates the domains its interrupt controllers provide and delivers
 * interrupts with {@linkcode generic_handle_domain_irq}: a wired controller passes the line
 * number, an IMSIC-like MSI target passes the identity (the MSI data it received).
 *
 * Threaded handlers run right after the primary handlers of the same delivery, before
 * `generic_handle_domain_irq` returns; an interrupt arriving while a handler or thread of the
 * same irq runs is marked pending and replayed, as on a real CPU that would take it later.
 *
 * @module
 */
import type { Device, FwNode } from "./device.ts";
import { devm_add_action } from "./device.ts";
import { Errno } from "./errno.ts";
import type { Kernel } from "./kernel.ts";

/** irqreturn_t IRQ_NONE: the interrupt was not from this device. */
export const IRQ_NONE = 0;
/** irqreturn_t IRQ_HANDLED: the interrupt was handled. */
export const IRQ_HANDLED = 1;
/** irqreturn_t IRQ_WAKE_THREAD: run the threaded handler. */
export const IRQ_WAKE_THREAD = 2;
/** An irqreturn_t value. */
export type IrqReturn = 0 | 1 | 2;

/** IRQF_SHARED: the line may be shared by several devices. */
export const IRQF_SHARED = 0x0000_0080;
/** IRQF_ONESHOT: keep the irq masked until the threaded handler finished. */
export const IRQF_ONESHOT = 0x0000_2000;
/** IRQF_NO_AUTOEN: do not enable the irq on request; the driver calls enable_irq(). */
export const IRQF_NO_AUTOEN = 0x0008_0000;

/** irq_handler_t: a primary or threaded handler. */
export type IrqHandler = (irq: number, devId: unknown) => IrqReturn;

/** struct msi_msg: what a device writes to signal an MSI. */
export interface MsiMsg {
  /** Low 32 bits of the doorbell address. */
  addressLo: number;
  /** High 32 bits of the doorbell address. */
  addressHi: number;
  /** The data written (the identity, for an IMSIC). */
  data: number;
}

/** struct msi_desc: one MSI vector of a device. */
export interface MsiDesc {
  /** The device the vector belongs to. */
  readonly dev: Device;
  /** Index of the vector within the device (MSI-X table entry, platform MSI index). */
  readonly msiIndex: number;
  /** The virq. */
  readonly irq: number;
  /** The message last written to the device. */
  msg: MsiMsg;
  /**
   * msi_desc.iommu_msi_iova: where the IOMMU maps the doorbell page for this device, set by
   * {@linkcode iommu_dma_prepare_msi} (meaningless while `iommuMsiShift` is 0).
   */
  iommuMsiIova: number;
  /** msi_desc.iommu_msi_shift: log2 of that page's size; 0 when the doorbell is not remapped. */
  iommuMsiShift: number;
}

/**
 * What an interrupt controller provides to its domain (the machine implements it).
 *
 * For wired domains `hwirq` is the line; for MSI domains it is the identity, and
 * `composeMsiMsg` says where the device must write.
 */
export interface IrqDomainOps {
  /** Masks (`true`) or unmasks a hwirq at the controller. */
  mask?(hwirq: number, masked: boolean): void;
  /**
   * Mirrors the MSI part of irq_domain_ops.alloc: readies vector `desc` (identity `hwirq`)
   * before its message is composed. A controller whose doorbell sits behind an IOMMU calls
   * {@linkcode iommu_dma_prepare_msi} here; throwing fails the allocation.
   */
  prepareMsi?(hwirq: number, desc: MsiDesc): void;
  /**
   * Mirrors irq_compose_msi_msg(): the message that raises `hwirq` for `desc` (MSI domains
   * only); a controller that prepared `desc` sets the address with {@linkcode msi_msg_set_addr}.
   */
  composeMsiMsg?(hwirq: number, desc: MsiDesc): MsiMsg;
  /** Mirrors irq_domain_ops.xlate: the hwirq of a device-tree interrupt specifier. */
  xlate?(cells: readonly number[]): number;
}

/** struct irq_domain: a controller's hwirq space mapped to virqs. */
export class IrqDomain {
  /** hwirq → virq. */
  readonly mappings: Map<number, number> = new Map();
  /** Identities handed out (MSI domains). */
  readonly #used: Uint8Array;

  /** Use {@linkcode irq_domain_create_linear} or {@linkcode irq_domain_create_msi}. */
  constructor(
    readonly kernel: Kernel,
    readonly kind: "wired" | "msi",
    readonly name: string,
    readonly fwnode: FwNode | null,
    readonly size: number,
    readonly ops: IrqDomainOps,
  ) {
    this.#used = new Uint8Array(size + 1);
  }

  /**
   * Reserves `n` free identities (1-based); `aligned` gives a contiguous size-aligned block.
   * @ignore package-private
   */
  _allocIds(n: number, aligned: boolean): number[] {
    const out: number[] = [];
    if (aligned) {
      let blk = 1;
      while (blk < n) blk *= 2;
      for (let base = blk; base + n - 1 <= this.size; base += blk) {
        if (this.#used.subarray(base, base + n).every((u) => u === 0)) {
          for (let i = 0; i < n; i++) out.push(base + i);
          break;
        }
      }
    } else {
      for (let id = 1; id <= this.size && out.length < n; id++) {
        if (this.#used[id] === 0) out.push(id);
      }
    }
    if (out.length < n) {
      throw new Errno("ENOSPC", `${this.name}: no room for ${n} interrupt identities`);
    }
    for (const id of out) this.#used[id] = 1;
    return out;
  }

  /**
   * Returns an identity to the pool.
   * @ignore package-private
   */
  _freeId(id: number): void {
    this.#used[id] = 0;
  }
}

/** One registered handler (struct irqaction). */
export interface IrqAction {
  /** Primary handler. */
  readonly handler: IrqHandler;
  /** Threaded handler, if any. */
  readonly threadFn: IrqHandler | null;
  /** IRQF_* flags. */
  readonly flags: number;
  /** Name shown in {@linkcode IrqLayer.procInterrupts}. */
  readonly name: string;
  /** The cookie passed to handlers and to free_irq. */
  readonly devId: unknown;
  /** The thread has been woken and not run yet. */
  threadPending: boolean;
}

/** struct irq_desc: the state of one virq. */
export class IrqDesc {
  /** Handlers, in request order. */
  readonly actions: IrqAction[] = [];
  /** Deliveries so far (the /proc/interrupts count). */
  count = 0;
  /** Deliveries no handler claimed. */
  unhandled = 0;
  /** disable_irq() nesting; the irq is masked while > 0. */
  depth = 0;
  /** Masked at the controller (disabled, oneshot in progress, or not requested). */
  masked = true;
  /** A delivery arrived while it could not be handled; replayed when possible. */
  pending = false;
  /** Extra mask hook for per-device MSI masking (an MSI-X table entry's mask bit). */
  maskHook: ((masked: boolean) => void) | null = null;
  /** The MSI vector, for MSI domains. */
  msi: MsiDesc | null = null;
  #inHardirq = false;
  #inThread = false;
  #oneshotMasked = false;

  /** Use {@linkcode irq_create_mapping}. */
  constructor(readonly irq: number, readonly domain: IrqDomain, readonly hwirq: number) {}

  /**
   * Applies the mask state to the controller and the device.
   * @ignore package-private
   */
  _setMasked(masked: boolean): void {
    if (this.masked === masked) return;
    this.masked = masked;
    this.domain.ops.mask?.(this.hwirq, masked);
    this.maskHook?.(masked);
  }

  /**
   * True when deliveries must wait.
   * @ignore package-private
   */
  _blocked(): boolean {
    return this.depth > 0 || this.#oneshotMasked;
  }

  /**
   * Runs primary handlers (looping on pending), then woken threads.
   * @ignore package-private
   */
  _deliver(): void {
    if (this.actions.length === 0) {
      this.unhandled++;
      return;
    }
    if (this._blocked() || this.#inHardirq) {
      this.pending = true;
      return;
    }
    const layer = this.domain.kernel.irq;
    if (layer._irqsOff) {
      this.pending = true;
      layer._deferred.add(this);
      return;
    }
    this.#inHardirq = true;
    try {
      do {
        this.pending = false;
        let handled = false;
        let woke = false;
        for (const a of this.actions) {
          const r = a.handler(this.irq, a.devId);
          if (r === IRQ_WAKE_THREAD && a.threadFn !== null) {
            a.threadPending = true;
            woke = true;
          }
          if (r !== IRQ_NONE) handled = true;
        }
        if (!handled) this.unhandled++;
        if (woke && this.actions[0].flags & IRQF_ONESHOT) {
          this.#oneshotMasked = true;
          this._setMasked(true);
        }
      } while (this.pending && !this._blocked());
    } finally {
      this.#inHardirq = false;
    }
    this.#runThreads();
  }

  #runThreads(): void {
    if (this.#inThread) return;
    this.#inThread = true;
    try {
      for (let again = true; again;) {
        again = false;
        for (const a of this.actions) {
          if (!a.threadPending) continue;
          a.threadPending = false;
          a.threadFn!(this.irq, a.devId);
          again = true;
        }
      }
    } finally {
      this.#inThread = false;
    }
    if (this.#oneshotMasked) {
      this.#oneshotMasked = false;
      if (this.depth === 0 && this.actions.length > 0) this._setMasked(false);
    }
    if (this.pending && !this._blocked()) this._deliver();
  }

  /**
   * Forgets transient state when the last action goes.
   * @ignore package-private
   */
  _shutdown(): void {
    this._setMasked(true);
    this.depth = 0;
    this.pending = false;
    this.#oneshotMasked = false;
  }
}

/** The irq layer of one kernel (`kernel.irq`). */
export class IrqLayer {
  /** Registered domains, in creation order. */
  readonly domains: IrqDomain[] = [];
  /** Deliveries to hwirqs without a mapping. */
  spurious = 0;
  /**
   * Interrupts are off on the (one) CPU: local_irq_save() is in force.
   * @ignore package-private
   */
  _irqsOff = false;
  /**
   * Descriptors whose delivery waits for local_irq_restore().
   * @ignore package-private
   */
  readonly _deferred: Set<IrqDesc> = new Set();
  readonly #descs = new Map<number, IrqDesc>();
  readonly #msi = new Map<Device, MsiDesc[]>();
  #nextIrq = 1;

  /** Creates the irq layer of `kernel`. */
  constructor(readonly kernel: Kernel) {}

  /**
   * Registers a domain; devices that deferred because their interrupt controller had no domain
   * are retried (as when an irqchip driver binds).
   * @ignore package-private
   */
  _addDomain(d: IrqDomain): void {
    if (d.fwnode !== null && this.domains.some((x) => x.fwnode === d.fwnode)) {
      throw new Errno("EEXIST", `${d.fwnode.name} already has an irq domain`);
    }
    this.domains.push(d);
    this.kernel.core.trigger();
  }

  /** Mirrors irq_to_desc(): the descriptor of `irq`, or undefined. */
  desc(irq: number): IrqDesc | undefined {
    return this.#descs.get(irq);
  }

  /**
   * Allocates a virq for `hwirq` in `domain`.
   * @ignore package-private
   */
  _newDesc(domain: IrqDomain, hwirq: number): IrqDesc {
    const d = new IrqDesc(this.#nextIrq++, domain, hwirq);
    this.#descs.set(d.irq, d);
    domain.mappings.set(hwirq, d.irq);
    return d;
  }

  /**
   * Frees a virq.
   * @ignore package-private
   */
  _dropDesc(d: IrqDesc): void {
    if (d.actions.length > 0) {
      throw new Errno(
        "EBUSY",
        `Cannot dispose irq ${d.irq}: still requested by ${d.actions[0].name}`,
      );
    }
    this.#descs.delete(d.irq);
    d.domain.mappings.delete(d.hwirq);
  }

  /** The MSI vectors of `dev` (empty when none), by index. */
  msiDescs(dev: Device): MsiDesc[] {
    let list = this.#msi.get(dev);
    if (list === undefined) {
      list = [];
      this.#msi.set(dev, list);
    }
    return list;
  }

  /**
   * Forgets `dev`'s MSI vector list once empty.
   * @ignore package-private
   */
  _dropMsi(dev: Device): void {
    this.#msi.delete(dev);
  }

  /** Lines like /proc/interrupts: `irq: count  domain hwirq  names`. */
  procInterrupts(): string[] {
    return [...this.#descs.values()].filter((d) => d.actions.length > 0).map((d) =>
      `${String(d.irq).padStart(3)}: ${
        String(d.count).padStart(10)
      }  ${d.domain.name} ${d.hwirq}  ${d.actions.map((a) => a.name).join(", ")}`
    );
  }
}

/**
 * Mirrors irq_domain_create_linear(): a wired interrupt controller with `size` lines (hwirq
 * 0..size-1), found by `fwnode` when device-tree `interrupts` resolve.
 */
export function irq_domain_create_linear(
  kernel: Kernel,
  fwnode: FwNode | null,
  size: number,
  ops: IrqDomainOps = {},
  name: string = fwnode?.name ?? "wired",
): IrqDomain {
  const d = new IrqDomain(kernel, "wired", name, fwnode, size, ops);
  kernel.irq._addDomain(d);
  return d;
}

/**
 * An MSI parent domain (an IMSIC interrupt file): identities 1..`nrIds`, messages composed by
 * `ops.composeMsiMsg`. Devices whose `msi-parent` is `fwnode` allocate vectors from it.
 */
export function irq_domain_create_msi(
  kernel: Kernel,
  fwnode: FwNode | null,
  nrIds: number,
  ops: IrqDomainOps & Required<Pick<IrqDomainOps, "composeMsiMsg">>,
  name: string = fwnode?.name ?? "msi",
): IrqDomain {
  const d = new IrqDomain(kernel, "msi", name, fwnode, nrIds, ops);
  kernel.irq._addDomain(d);
  return d;
}

/** Mirrors irq_find_matching_fwnode(): the domain registered for `fwnode`, or null. */
export function irq_find_matching_fwnode(kernel: Kernel, fwnode: FwNode): IrqDomain | null {
  return kernel.irq.domains.find((d) => d.fwnode === fwnode) ?? null;
}

/** Mirrors irq_create_mapping(): the virq of a wired `hwirq` (created on first use). */
export function irq_create_mapping(domain: IrqDomain, hwirq: number): number {
  if (domain.kind !== "wired" || !Number.isInteger(hwirq) || hwirq < 0 || hwirq >= domain.size) {
    throw new Errno("EINVAL", `Cannot map hwirq ${hwirq} in ${domain.name}`);
  }
  return domain.mappings.get(hwirq) ?? domain.kernel.irq._newDesc(domain, hwirq).irq;
}

/** Mirrors irq_find_mapping(): the virq of `hwirq`, or 0. */
export function irq_find_mapping(domain: IrqDomain, hwirq: number): number {
  return domain.mappings.get(hwirq) ?? 0;
}

/** Mirrors irq_dispose_mapping(): frees a wired virq (EBUSY while requested). */
export function irq_dispose_mapping(kernel: Kernel, irq: number): void {
  const d = _desc(kernel, irq);
  if (d.domain.kind !== "wired") throw new Errno("EINVAL", `irq ${irq} is an MSI vector`);
  kernel.irq._dropDesc(d);
}

/**
 * Mirrors generic_handle_domain_irq(): delivers `hwirq` of `domain`; what the machine's interrupt
 * controller calls. Returns false (and counts it spurious) when the hwirq has no virq. Never
 * throws on its own; exceptions come from handlers (driver bugs).
 */
export function generic_handle_domain_irq(domain: IrqDomain, hwirq: number): boolean {
  const irq = domain.mappings.get(hwirq);
  if (irq === undefined) {
    domain.kernel.irq.spurious++;
    return false;
  }
  return generic_handle_irq(domain.kernel, irq);
}

/** Mirrors generic_handle_irq(): delivers virq `irq`. */
export function generic_handle_irq(kernel: Kernel, irq: number): boolean {
  const d = kernel.irq.desc(irq);
  if (d === undefined) {
    kernel.irq.spurious++;
    return false;
  }
  d.count++;
  d._deliver();
  return true;
}

function _desc(kernel: Kernel, irq: number): IrqDesc {
  const d = kernel.irq.desc(irq);
  if (d === undefined) throw new Errno("EINVAL", `No irq ${irq}`);
  return d;
}

/**
 * Mirrors request_threaded_irq(): installs `handler` (primary; null means "wake the thread") and
 * `threadFn` on `irq`. Shared lines need IRQF_SHARED on every action, a non-null `devId` and the
 * same IRQF_ONESHOT; a null `handler` needs IRQF_ONESHOT (EINVAL otherwise), a busy line EBUSY.
 *
 * @example A threaded handler runs after its primary handler
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   generic_handle_domain_irq, irq_create_mapping, irq_domain_create_linear, IRQ_HANDLED,
 *   IRQ_WAKE_THREAD, IRQF_ONESHOT, Kernel, request_threaded_irq,
 * } from "@iommu-lab/kernel";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 *
 * const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20) });
 * const wires = irq_domain_create_linear(kernel, null, 32);
 * const irq = irq_create_mapping(wires, 7);
 * const seen: string[] = [];
 * request_threaded_irq(kernel, irq, () => (seen.push("hard"), IRQ_WAKE_THREAD),
 *   () => (seen.push("thread"), IRQ_HANDLED), IRQF_ONESHOT, "demo", null);
 * generic_handle_domain_irq(wires, 7);
 * assert.deepEqual(seen, ["hard", "thread"]);
 * ```
 */
export function request_threaded_irq(
  kernel: Kernel,
  irq: number,
  handler: IrqHandler | null,
  threadFn: IrqHandler | null,
  flags: number,
  name: string,
  devId: unknown,
): void {
  const d = _desc(kernel, irq);
  if (handler === null && threadFn === null) {
    throw new Errno("EINVAL", `${name}: irq ${irq} needs a handler`);
  }
  if (handler === null && !(flags & IRQF_ONESHOT)) {
    throw new Errno("EINVAL", `${name}: threaded irq ${irq} with handler=NULL and !ONESHOT`);
  }
  if (flags & IRQF_SHARED && (devId === null || devId === undefined)) {
    throw new Errno("EINVAL", `${name}: shared irq ${irq} needs a dev_id`);
  }
  const first = d.actions[0];
  if (first !== undefined) {
    const ok = first.flags & flags & IRQF_SHARED &&
      (first.flags & IRQF_ONESHOT) === (flags & IRQF_ONESHOT);
    if (!ok) throw new Errno("EBUSY", `${name}: irq ${irq} is already used by ${first.name}`);
  }
  d.actions.push({
    handler: handler ?? (() => IRQ_WAKE_THREAD),
    threadFn,
    flags,
    name,
    devId,
    threadPending: false,
  });
  if (first === undefined) {
    if (flags & IRQF_NO_AUTOEN) d.depth = 1;
    else d._setMasked(false);
  }
}

/** Mirrors request_irq(): a primary handler only. */
export function request_irq(
  kernel: Kernel,
  irq: number,
  handler: IrqHandler,
  flags: number,
  name: string,
  devId: unknown,
): void {
  request_threaded_irq(kernel, irq, handler, null, flags, name, devId);
}

/** Mirrors free_irq(): removes the action of `devId` (EINVAL if there is none). */
export function free_irq(kernel: Kernel, irq: number, devId: unknown): void {
  const d = _desc(kernel, irq);
  const i = d.actions.findIndex((a) => a.devId === devId);
  if (i < 0) throw new Errno("EINVAL", `Trying to free already-free IRQ ${irq}`);
  d.actions.splice(i, 1);
  if (d.actions.length === 0) d._shutdown();
}

/** Mirrors devm_request_threaded_irq(): freed when `dev`'s driver unbinds. */
export function devm_request_threaded_irq(
  dev: Device,
  irq: number,
  handler: IrqHandler | null,
  threadFn: IrqHandler | null,
  flags: number,
  name: string,
  devId: unknown,
): void {
  request_threaded_irq(dev.kernel, irq, handler, threadFn, flags, name, devId);
  devm_add_action(dev, () => free_irq(dev.kernel, irq, devId));
}

/** Mirrors devm_request_irq(). */
export function devm_request_irq(
  dev: Device,
  irq: number,
  handler: IrqHandler,
  flags: number,
  name: string,
  devId: unknown,
): void {
  devm_request_threaded_irq(dev, irq, handler, null, flags, name, devId);
}

/**
 * Mirrors local_irq_save(): no interrupt is handled on the CPU (the kernel's only one) until the
 * matching {@linkcode local_irq_restore}; returns the flags to restore (true when interrupts were
 * already off). Interrupts raised meanwhile are taken at restore, as a CPU takes a pending
 * interrupt when it re-enables them. A driver needs it where a handler could run inside a
 * sequence that must not be interleaved: in simulated time a handler runs whenever a poll loop
 * lets the clock advance.
 *
 * @example A delivery during the section runs at restore
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   generic_handle_domain_irq, irq_create_mapping, irq_domain_create_linear, IRQ_HANDLED, Kernel,
 *   local_irq_restore, local_irq_save, request_irq,
 * } from "@iommu-lab/kernel";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 *
 * const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 20) });
 * const wires = irq_domain_create_linear(kernel, null, 4);
 * const seen: string[] = [];
 * request_irq(kernel, irq_create_mapping(wires, 1), () => (seen.push("irq"), IRQ_HANDLED), 0, "demo", null);
 * const flags = local_irq_save(kernel);
 * generic_handle_domain_irq(wires, 1);
 * seen.push("critical section done");
 * local_irq_restore(kernel, flags);
 * assert.deepEqual(seen, ["critical section done", "irq"]);
 * ```
 */
export function local_irq_save(kernel: Kernel): boolean {
  const flags = kernel.irq._irqsOff;
  kernel.irq._irqsOff = true;
  return flags;
}

/**
 * Mirrors local_irq_restore(): puts back the state {@linkcode local_irq_save} returned; when that
 * turns interrupts on, the deliveries held back meanwhile are handled, in arrival order.
 */
export function local_irq_restore(kernel: Kernel, flags: boolean): void {
  const layer = kernel.irq;
  layer._irqsOff = flags;
  if (flags) return;
  for (const d of layer._deferred) {
    layer._deferred.delete(d);
    if (d.pending && !d._blocked()) d._deliver();
    if (layer._irqsOff) return;
  }
}

/** Mirrors irqs_disabled(): whether local_irq_save() is in force. */
export function irqs_disabled(kernel: Kernel): boolean {
  return kernel.irq._irqsOff;
}

/** Mirrors disable_irq(): masks `irq`; nests. Deliveries meanwhile are replayed on enable. */
export function disable_irq(kernel: Kernel, irq: number): void {
  const d = _desc(kernel, irq);
  if (d.depth++ === 0) d._setMasked(true);
}

/** Mirrors enable_irq(): undoes one disable_irq (EINVAL when unbalanced). */
export function enable_irq(kernel: Kernel, irq: number): void {
  const d = _desc(kernel, irq);
  if (d.depth === 0) throw new Errno("EINVAL", `Unbalanced enable for IRQ ${irq}`);
  if (--d.depth === 0 && d.actions.length > 0) {
    d._setMasked(false);
    if (d.pending) d._deliver();
  }
}

/** Mirrors dev_get_msi_domain(): where `dev`'s MSIs are allocated (null when none). */
export function dev_get_msi_domain(dev: Device): IrqDomain | null {
  return dev.msiDomain;
}

/** Mirrors dev_set_msi_domain(). */
export function dev_set_msi_domain(dev: Device, domain: IrqDomain | null): void {
  if (domain !== null && domain.kind !== "msi") {
    throw new Errno("EINVAL", `${domain.name} is not an MSI domain`);
  }
  dev.msiDomain = domain;
}

/** How a device receives its MSI messages and masks its vectors (bus-specific). */
export interface MsiWriter {
  /** Mirrors irq_write_msi_msg(): programs vector `desc.msiIndex` with `msg`. */
  write(desc: MsiDesc, msg: MsiMsg): void;
  /** Masks or unmasks the vector at the device, if the device can. */
  mask?(desc: MsiDesc, masked: boolean): void;
}

/**
 * Mirrors iommu_dma_prepare_msi(), as an MSI controller calls it when it allocates `desc`: has
 * the IOMMU core map the doorbell at `msiAddr` into the domain of `desc.dev` and record where in
 * `desc`. A no-op without an IOMMU core (Linux's stub without CONFIG_IOMMU_API). Throws what the
 * core throws (ENOMEM when the doorbell cannot be mapped).
 */
export function iommu_dma_prepare_msi(desc: MsiDesc, msiAddr: number): void {
  desc.dev.kernel.iommuLayer?.prepareMsi(desc, msiAddr);
}

/**
 * Mirrors msi_msg_set_addr(): points `msg` at the doorbell `msiAddr`, or at its IOMMU mapping
 * (same offset in the page) when {@linkcode iommu_dma_prepare_msi} remapped it for `desc`.
 */
export function msi_msg_set_addr(desc: MsiDesc, msg: MsiMsg, msiAddr: number): void {
  const shift = desc.iommuMsiShift;
  const addr = shift === 0 ? msiAddr : desc.iommuMsiIova + msiAddr % 2 ** shift;
  msg.addressLo = addr % 4294967296;
  msg.addressHi = Math.floor(addr / 4294967296);
}

/**
 * Mirrors msi_domain_alloc_irqs_range(): allocates `nvec` vectors (indices after the existing
 * ones) from `dev`'s MSI domain, prepares them (the controller's `prepareMsi`), then composes
 * each message and writes it with `writer`. Returns the virqs. `contiguous` gives size-aligned
 * consecutive identities (multi-message MSI). ENOSPC when the domain is full, ENODEV without an
 * MSI domain, or what `prepareMsi` threw; a failed call leaves no vector behind.
 */
export function msi_domain_alloc_irqs(
  dev: Device,
  nvec: number,
  writer: MsiWriter,
  contiguous = false,
): number[] {
  const domain = dev.msiDomain;
  if (domain === null) throw new Errno("ENODEV", `${dev.name}: no MSI domain`);
  if (!Number.isInteger(nvec) || nvec < 1) throw new Errno("EINVAL", `Bad vector count ${nvec}`);
  const ids = domain._allocIds(nvec, contiguous);
  const irq = dev.kernel.irq;
  const list = irq.msiDescs(dev);
  const base = list.length;
  const descs: MsiDesc[] = [];
  try {
    for (let i = 0; i < nvec; i++) {
      const d = irq._newDesc(domain, ids[i]);
      const msg = { addressLo: 0, addressHi: 0, data: 0 };
      const desc: MsiDesc = {
        dev,
        msiIndex: base + i,
        irq: d.irq,
        msg,
        iommuMsiIova: 0,
        iommuMsiShift: 0,
      };
      d.msi = desc;
      descs.push(desc);
      domain.ops.prepareMsi?.(ids[i], desc);
    }
  } catch (e) {
    for (const desc of descs) irq._dropDesc(irq.desc(desc.irq)!);
    for (const id of ids) domain._freeId(id);
    if (base === 0) irq._dropMsi(dev);
    throw e;
  }
  return descs.map((desc, i) => {
    const msg = domain.ops.composeMsiMsg!(ids[i], desc);
    desc.msg = msg;
    const mask = writer.mask;
    if (mask) irq.desc(desc.irq)!.maskHook = (m) => mask(desc, m);
    list.push(desc);
    mask?.(desc, true);
    writer.write(desc, msg);
    return desc.irq;
  });
}

/** Mirrors msi_get_virq(): the virq of `dev`'s MSI vector `index`, or 0. */
export function msi_get_virq(dev: Device, index: number): number {
  return dev.kernel.irq.msiDescs(dev)[index]?.irq ?? 0;
}

/**
 * Mirrors msi_domain_free_irqs_all(): releases every MSI vector of `dev` (EBUSY while one is
 * still requested).
 */
export function msi_domain_free_irqs_all(dev: Device): void {
  const irq = dev.kernel.irq;
  const list = irq.msiDescs(dev);
  const busy = list.find((m) => (irq.desc(m.irq)?.actions.length ?? 0) > 0);
  if (busy !== undefined) {
    throw new Errno("EBUSY", `${dev.name}: MSI vector ${busy.msiIndex} is still requested`);
  }
  for (const m of list) {
    const d = irq.desc(m.irq)!;
    irq._dropDesc(d);
    d.domain._freeId(d.hwirq);
  }
  irq._dropMsi(dev);
}
