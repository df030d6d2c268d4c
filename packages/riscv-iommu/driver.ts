/**
 * The driver instance: what a loaded module is in Linux, with the series features it runs. It
 * composes the `iommu_ops` and paging-domain ops of `iommu.ts` with the features' (see
 * `feature.ts`) and runs the features' per-IOMMU plumbing for `riscv_iommu_init()` and
 * `riscv_iommu_remove()`.
 *
 * DIVERGENCE: Linux has one riscv-iommu driver per kernel and no feature objects; a series
 * patches iommu.c. Here one `RiscvIommuDriver` per kernel holds what iommu.c keeps static (the
 * ops, the identity and blocking domains), and a series plugs in through the hooks of
 * `feature.ts`, so several series can be picked per machine.
 *
 * @module
 */
import { dev_info, type Device, Errno } from "@iommu-lab/kernel";
import {
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_HW_INFO_TYPE_DEFAULT,
  IommuDomain,
  type IommuDomainOps,
  type IommuHwInfo,
  type IommuOps,
  type IommuUserData,
} from "@iommu-lab/iommu";
import type { RiscvIommuFeature } from "./feature.ts";
import {
  RISCV_IOMMU_ALLOC_FLAGS,
  riscv_iommu_blocking_domain_ops,
  riscv_iommu_identity_domain_ops,
  riscv_iommu_ops,
  riscv_iommu_paging_domain_ops,
  riscv_iommu_queue_alloc,
  riscv_iommu_queue_disable,
  riscv_iommu_queue_enable,
  type RiscvIommuDomain,
  type RiscvIommuInfo,
} from "./iommu.ts";
import { dev_to_iommu, type RiscvIommuDevice, RiscvIommuQueue } from "./iommu_h.ts";

/** Options of a {@linkcode RiscvIommuDriver}. */
export interface RiscvIommuDriverOptions {
  /** Series features, in the order they probe. */
  features?: readonly RiscvIommuFeature[];
}

/**
 * One instance of the driver: the `iommu_ops`, the static identity and blocking domains and the
 * PSCID space shared by every IOMMU it drives, and the series features it runs. A machine makes
 * one per kernel and hands it to the bus glue.
 *
 * Throws EINVAL when two features share a name or an op, or a feature would replace an op of
 * the base driver.
 *
 * @example A driver instance with a feature adding an iommu_op
 * ```ts
 * import assert from "node:assert/strict";
 * import { IOMMU_CAP_DIRTY_TRACKING } from "@iommu-lab/iommu";
 * import { RiscvIommuDriver } from "@iommu-lab/riscv-iommu";
 *
 * const drv = new RiscvIommuDriver({
 *   features: [{ name: "dirty", ops: { capable: (_dev, cap) => cap === IOMMU_CAP_DIRTY_TRACKING } }],
 * });
 * assert.equal(drv.ops.release_domain, drv.blocked_domain);
 * assert.equal(drv.ops.capable?.(null!, IOMMU_CAP_DIRTY_TRACKING), true);
 * assert.throws(
 *   () => new RiscvIommuDriver({ features: [{ name: "bad", ops: { probe_device: () => null! } }] }),
 *   { code: "EINVAL" },
 * );
 * ```
 */
export class RiscvIommuDriver {
  /** The features, in probe order. */
  readonly features: readonly RiscvIommuFeature[];
  /** The ops registered for every IOMMU of this driver. */
  readonly ops: IommuOps;
  /** Pass-through for a device (riscv_iommu_identity_domain): DC.fsc Bare, V set. */
  readonly identity_domain: IommuDomain;
  /** No DMA for a device (riscv_iommu_blocking_domain): DC invalid, requests fault (258). */
  readonly blocked_domain: IommuDomain;
  /** The ops of every paging domain: `riscv_iommu_paging_domain_ops()` and the features'. */
  readonly paging_domain_ops: IommuDomainOps;

  /** A driver instance running `opts.features`. */
  constructor(opts: RiscvIommuDriverOptions = {}) {
    this.features = opts.features ?? [];
    const names = new Set<string>();
    for (const f of this.features) {
      if (names.has(f.name)) throw new Errno("EINVAL", `Feature ${f.name} is listed twice`);
      names.add(f.name);
    }

    this.identity_domain = new IommuDomain(IOMMU_DOMAIN_IDENTITY, riscv_iommu_identity_domain_ops);
    this.blocked_domain = new IommuDomain(
      IOMMU_DOMAIN_BLOCKED,
      _merge(
        riscv_iommu_blocking_domain_ops,
        this.features.map((f) => [f.name, f.blockedDomainOps ?? {}]),
        [],
      ),
    );
    this.paging_domain_ops = _merge(
      riscv_iommu_paging_domain_ops(),
      this.features.map((f) => [f.name, f.domainOps ?? {}]),
      [],
    );
    const ops = _merge(
      riscv_iommu_ops(this),
      this.features.map((f) => [f.name, _unrouted(f)]),
      ["capable"],
    );
    _check_routes(this.features);
    const base = ops.domain_alloc_paging_flags!;
    ops.domain_alloc_paging_flags = (dev, flags, user_data) =>
      _route_alloc(dev, flags, user_data, base);
    if (this.features.some((f) => f.ops?.hw_info)) ops.hw_info = _route_hw_info;
    this.ops = ops;
  }

  /**
   * Sets up on `iommu` the features it supports, in order: each one's queue (allocated and
   * enabled), then its `probe`. A feature missing a capability is skipped with one line naming
   * the feature and the capability, as the kernel logs a feature it leaves off. On a failure the feature's own queue is disabled and the error
   * thrown; the features set up before stay for `removeFeatures()`. Called by
   * `riscv_iommu_init()` after the command and fault queues run.
   */
  probeFeatures(iommu: RiscvIommuDevice): void {
    for (const f of this.features) {
      const missing = f.missingCapability?.(iommu) ?? null;
      if (missing !== null) {
        dev_info(iommu.dev, `${f.name} disabled: no ${missing}`);
        continue;
      }
      const fq = f.queue;
      let queue: RiscvIommuQueue | null = null;
      if (fq) {
        queue = new RiscvIommuQueue(fq.qid, fq.qbr, fq.qcr, fq.log2sz, fq.entry_size);
        riscv_iommu_queue_alloc(iommu, queue);
        riscv_iommu_queue_enable(iommu, queue, (q) => fq.thread(iommu, q));
        iommu.queues.set(fq.qid, queue);
      }
      try {
        f.probe?.(iommu);
      } catch (e) {
        if (queue !== null) {
          riscv_iommu_queue_disable(queue);
          iommu.queues.delete(queue.qid);
        }
        throw e;
      }
      iommu.active_features.push(f);
    }
  }

  /**
   * Runs the `probeDevice` hook of every feature active on `iommu` for a device being probed
   * onto it, in order; when one throws, those that ran are released again (last first) and the
   * error thrown. Called by `riscv_iommu_probe_device()` once the device contexts exist.
   */
  probeDeviceFeatures(iommu: RiscvIommuDevice, dev: Device, info: RiscvIommuInfo): void {
    const active = iommu.active_features;
    let done = 0;
    try {
      for (; done < active.length; done++) active[done].probeDevice?.(iommu, dev, info);
    } catch (e) {
      while (done-- > 0) active[done].releaseDevice?.(iommu, dev, info);
      throw e;
    }
  }

  /**
   * Runs the `releaseDevice` hook of every feature active on `iommu`, last first. Called by
   * `riscv_iommu_release_device()` before the per-device data is freed.
   */
  releaseDeviceFeatures(iommu: RiscvIommuDevice, dev: Device, info: RiscvIommuInfo): void {
    const active = iommu.active_features;
    for (let i = active.length - 1; i >= 0; i--) active[i].releaseDevice?.(iommu, dev, info);
  }

  /**
   * Undoes {@linkcode probeFeatures}, last feature first: its `remove`, then its queue off.
   * Called by `riscv_iommu_remove()` (and a failing `riscv_iommu_init()`) once the directory is
   * off.
   */
  removeFeatures(iommu: RiscvIommuDevice): void {
    while (iommu.active_features.length > 0) {
      const f = iommu.active_features.pop()!;
      f.remove?.(iommu);
      const queue = f.queue ? iommu.queues.get(f.queue.qid) : undefined;
      if (queue !== undefined) {
        riscv_iommu_queue_disable(queue);
        iommu.queues.delete(queue.qid);
      }
    }
  }
}

/** A feature's ops without the two the driver routes to it (see {@linkcode _route_alloc}). */
function _unrouted(f: RiscvIommuFeature): Partial<IommuOps> {
  const { domain_alloc_paging_flags: _alloc, hw_info: _info, ...rest } = f.ops ?? {};
  return rest;
}

/**
 * EINVAL unless every feature with a routed op says what it owns, and no two features (nor a
 * feature and the base driver) own the same allocation flag or hw_info type.
 */
function _check_routes(features: readonly RiscvIommuFeature[]): void {
  let flags = RISCV_IOMMU_ALLOC_FLAGS;
  const types = new Map<number, string>();
  for (const f of features) {
    const own = f.allocFlags ?? 0;
    if ((own !== 0) !== (f.ops?.domain_alloc_paging_flags !== undefined)) {
      throw new Errno(
        "EINVAL",
        `Feature ${f.name}: allocFlags and domain_alloc_paging_flags go together`,
      );
    }
    if (own & flags) {
      throw new Errno(
        "EINVAL",
        `Feature ${f.name} cannot take allocation flags 0x${(own & flags).toString(16)}`,
      );
    }
    flags |= own;
    const hw = f.hwInfoTypes ?? [];
    if ((hw.length !== 0) !== (f.ops?.hw_info !== undefined)) {
      throw new Errno("EINVAL", `Feature ${f.name}: hwInfoTypes and hw_info go together`);
    }
    for (const t of hw) {
      const owner = types.get(t);
      if (owner !== undefined) {
        throw new Errno(
          "EINVAL",
          `Feature ${f.name} cannot take hw_info type ${t} of feature ${owner}`,
        );
      }
      types.set(t, f.name);
    }
  }
}

/**
 * domain_alloc_paging_flags of a driver instance: the feature active on the device's IOMMU that
 * owns a flag in `flags` allocates (it may delegate to `riscv_iommu_alloc_paging_domain()`), and
 * the domain remembers it (`feature`, for its `attachDev`); without one, the base driver. EOPNOTSUPP for flags neither it nor the base handles, for flags
 * of two features at once, and for user data nobody takes.
 */
function _route_alloc(
  dev: Device,
  flags: number,
  user_data: IommuUserData | null,
  base: NonNullable<IommuOps["domain_alloc_paging_flags"]>,
): IommuDomain {
  let owner: RiscvIommuFeature | null = null;
  for (const f of dev_to_iommu(dev).active_features) {
    if (((f.allocFlags ?? 0) & flags) === 0) continue;
    if (owner !== null) {
      throw new Errno("EOPNOTSUPP", `Flags of features ${owner.name} and ${f.name} together`);
    }
    owner = f;
  }
  if (owner === null) return base(dev, flags, user_data);
  if (flags & ~(owner.allocFlags! | RISCV_IOMMU_ALLOC_FLAGS)) {
    throw new Errno("EOPNOTSUPP", `${dev.name}: allocation flags 0x${flags.toString(16)}`);
  }
  const domain = owner.ops!.domain_alloc_paging_flags!(dev, flags, user_data) as RiscvIommuDomain;
  domain.feature = owner;
  return domain;
}

/**
 * hw_info of a driver instance: the feature active on the device's IOMMU that reports `type`
 * answers; IOMMU_HW_INFO_TYPE_DEFAULT goes to the first one reporting any. EOPNOTSUPP otherwise.
 */
function _route_hw_info(dev: Device, type: number): IommuHwInfo {
  for (const f of dev_to_iommu(dev).active_features) {
    const types = f.hwInfoTypes ?? [];
    if (types.length === 0) continue;
    if (type === IOMMU_HW_INFO_TYPE_DEFAULT || types.includes(type)) {
      return f.ops!.hw_info!(dev, type);
    }
  }
  throw new Errno("EOPNOTSUPP", `${dev.name}: no hw_info of type ${type}`);
}

/**
 * Adds the features' ops to `base`. Ops in `orMerged` (predicates) may come from several
 * features and are OR-ed with each other and with the base's; any other op may be provided
 * once, and never over a base op.
 */
function _merge<T extends object>(
  base: T,
  extra: [string, Partial<T>][],
  orMerged: string[],
): T {
  const out = { ...base } as Record<string, unknown>;
  const preds = new Map<string, ((...a: unknown[]) => boolean)[]>();
  const from = new Map<string, string>();
  for (const [name, ops] of extra) {
    for (const [key, fn] of Object.entries(ops)) {
      if (fn === undefined) continue;
      if (orMerged.includes(key)) {
        const first = out[key] as ((...a: unknown[]) => boolean) | undefined;
        const fns = preds.get(key) ?? (first === undefined ? [] : [first]);
        preds.set(key, [...fns, fn as (...a: unknown[]) => boolean]);
        continue;
      }
      if (key in out) {
        const owner = from.get(key) ?? "the base driver";
        throw new Errno("EINVAL", `Feature ${name} cannot replace ${key} of ${owner}`);
      }
      out[key] = fn;
      from.set(key, `feature ${name}`);
    }
  }
  for (const [key, fns] of preds) out[key] = (...a: unknown[]) => fns.some((fn) => fn(...a));
  return out as T;
}
