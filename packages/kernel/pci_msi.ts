/**
 * MSI and MSI-X of a PCI function: programs the MSI capability or the MSI-X table (through MMIO
 * on its BAR) with messages from the function's MSI domain. Mirrors drivers/pci/msi/ (msi.c,
 * api.c) and pcim_setup_msi_release() of devres.c.
 *
 * @module
 */
import { devm_add_action } from "./device.ts";
import { Errno } from "./errno.ts";
import { ioremap, writel } from "./io.ts";
import {
  msi_domain_alloc_irqs,
  msi_domain_free_irqs_all,
  msi_get_virq,
  type MsiDesc,
  type MsiMsg,
} from "./irq.ts";
import {
  pci_read_config_dword,
  pci_read_config_word,
  pci_write_config_dword,
  pci_write_config_word,
  type PciDev,
} from "./pci.ts";
import * as R from "./pci_regs.ts";
import { resource_size } from "./resource.ts";

/** pci_alloc_irq_vectors(): allow legacy INTx (not modelled: never satisfied). */
export const PCI_IRQ_INTX = 1 << 0;
/** pci_alloc_irq_vectors(): allow MSI. */
export const PCI_IRQ_MSI = 1 << 1;
/** pci_alloc_irq_vectors(): allow MSI-X. */
export const PCI_IRQ_MSIX = 1 << 2;

/** Mirrors pci_msix_vec_count(): the MSI-X table size (EINVAL without MSI-X). */
export function pci_msix_vec_count(pdev: PciDev): number {
  if (!pdev.msixCap) throw new Errno("EINVAL", `${pdev.name}: no MSI-X capability`);
  return (pci_read_config_word(pdev, pdev.msixCap + R.PCI_MSIX_FLAGS) & R.PCI_MSIX_FLAGS_QSIZE) + 1;
}

/** Mirrors pci_msi_vec_count(): vectors the MSI capability offers (EINVAL without MSI). */
export function pci_msi_vec_count(pdev: PciDev): number {
  if (!pdev.msiCap) throw new Errno("EINVAL", `${pdev.name}: no MSI capability`);
  const ctrl = pci_read_config_word(pdev, pdev.msiCap + R.PCI_MSI_FLAGS);
  return 1 << ((ctrl & R.PCI_MSI_FLAGS_QMASK) >> 1);
}

function _msixEnable(pdev: PciDev, nvec: number): void {
  const cap = pdev.msixCap;
  const table = pci_read_config_dword(pdev, cap + R.PCI_MSIX_TABLE);
  const bir = table & R.PCI_MSIX_TABLE_BIR;
  const r = pdev.resource[bir];
  const off = (table & R.PCI_MSIX_TABLE_OFFSET) >>> 0;
  const size = pci_msix_vec_count(pdev) * R.PCI_MSIX_ENTRY_SIZE;
  if (r === null || r === undefined || off + size > resource_size(r)) {
    throw new Errno("EINVAL", `${pdev.name}: MSI-X table outside BAR ${bir}`);
  }
  const ctrl = pci_read_config_word(pdev, cap + R.PCI_MSIX_FLAGS);
  pci_write_config_word(
    pdev,
    cap + R.PCI_MSIX_FLAGS,
    ctrl | R.PCI_MSIX_FLAGS_ENABLE | R.PCI_MSIX_FLAGS_MASKALL,
  );
  const io = ioremap(pdev.kernel, r.start + off, size);
  const entry = (d: MsiDesc) => d.msiIndex * R.PCI_MSIX_ENTRY_SIZE;
  const mask = (d: MsiDesc, masked: boolean) =>
    writel(io, entry(d) + R.PCI_MSIX_ENTRY_VECTOR_CTRL, masked ? R.PCI_MSIX_ENTRY_CTRL_MASKBIT : 0);
  try {
    msi_domain_alloc_irqs(pdev, nvec, {
      write(d: MsiDesc, msg: MsiMsg) {
        writel(io, entry(d) + R.PCI_MSIX_ENTRY_LOWER_ADDR, msg.addressLo);
        writel(io, entry(d) + R.PCI_MSIX_ENTRY_UPPER_ADDR, msg.addressHi);
        writel(io, entry(d) + R.PCI_MSIX_ENTRY_DATA, msg.data);
      },
      mask,
    });
  } catch (e) {
    pci_write_config_word(pdev, cap + R.PCI_MSIX_FLAGS, ctrl & ~R.PCI_MSIX_FLAGS_ENABLE);
    throw e;
  }
  pci_write_config_word(
    pdev,
    cap + R.PCI_MSIX_FLAGS,
    (ctrl | R.PCI_MSIX_FLAGS_ENABLE) & ~R.PCI_MSIX_FLAGS_MASKALL,
  );
  pdev.msixEnabled = true;
}

function _msiEnable(pdev: PciDev, nvec: number): void {
  const cap = pdev.msiCap;
  const ctrl = pci_read_config_word(pdev, cap + R.PCI_MSI_FLAGS);
  const is64 = (ctrl & R.PCI_MSI_FLAGS_64BIT) !== 0;
  const maskReg = cap + (is64 ? R.PCI_MSI_MASK_64 : R.PCI_MSI_MASK_32);
  const maskable = (ctrl & R.PCI_MSI_FLAGS_MASKBIT) !== 0;
  msi_domain_alloc_irqs(pdev, nvec, {
    write(d: MsiDesc, msg: MsiMsg) {
      if (d.msiIndex !== 0) return; // one message; the device adds the vector number to data
      pci_write_config_dword(pdev, cap + R.PCI_MSI_ADDRESS_LO, msg.addressLo);
      if (is64) pci_write_config_dword(pdev, cap + R.PCI_MSI_ADDRESS_HI, msg.addressHi);
      pci_write_config_word(pdev, cap + (is64 ? R.PCI_MSI_DATA_64 : R.PCI_MSI_DATA_32), msg.data);
    },
    mask: maskable
      ? (d: MsiDesc, masked: boolean) => {
        const bits = pci_read_config_dword(pdev, maskReg);
        pci_write_config_dword(
          pdev,
          maskReg,
          masked ? bits | (1 << d.msiIndex) : bits & ~(1 << d.msiIndex),
        );
      }
      : undefined,
  }, true);
  const mme = Math.log2(nvec) << 4;
  pci_write_config_word(
    pdev,
    cap + R.PCI_MSI_FLAGS,
    (ctrl & ~R.PCI_MSI_FLAGS_QSIZE) | mme | R.PCI_MSI_FLAGS_ENABLE,
  );
  pdev.msiEnabled = true;
}

/**
 * Mirrors pci_alloc_irq_vectors(): allocates between `min` and `max` vectors, MSI-X first then
 * MSI as `flags` allow, programming the MSI-X table (through MMIO on its BAR) or the MSI
 * capability with messages from the function's MSI domain. MSI is tried when MSI-X is absent,
 * offers fewer than `min` or fails. Returns the number allocated; ENOSPC when fewer than `min`
 * are possible, the last attempt's error when one failed, EINVAL for bad bounds or when already
 * enabled.
 * On a managed device (pcim_enable_device()) the vectors are freed when the driver unbinds or its
 * probe fails, as pcim_setup_msi_release() arranges.
 */
export function pci_alloc_irq_vectors(
  pdev: PciDev,
  min: number,
  max: number,
  flags: number,
): number {
  if (!Number.isInteger(min) || min < 1 || max < min) {
    throw new Errno("EINVAL", `${pdev.name}: bad vector range ${min}..${max}`);
  }
  if (pdev.msixEnabled || pdev.msiEnabled) {
    throw new Errno("EINVAL", `${pdev.name}: MSI/MSI-X already enabled`);
  }
  // As Linux: MSI-X first, then MSI when MSI-X is absent, too small or fails; the error is the
  // last attempt's, or ENOSPC when neither could offer `min` vectors.
  let err: unknown = new Errno(
    "ENOSPC",
    `${pdev.name}: cannot allocate ${min}..${max} interrupt vectors`,
  );
  const attempt = (n: number, enable: (pdev: PciDev, n: number) => void): boolean => {
    if (n < min) return false;
    try {
      _setupMsiRelease(pdev);
      enable(pdev, n);
    } catch (e) {
      err = e;
      return false;
    }
    pdev.irq = msi_get_virq(pdev, 0);
    return true;
  };
  if (flags & PCI_IRQ_MSIX && pdev.msixCap && pdev.msiDomain) {
    const n = Math.min(max, pci_msix_vec_count(pdev));
    if (attempt(n, _msixEnable)) return n;
  }
  if (flags & PCI_IRQ_MSI && pdev.msiCap && pdev.msiDomain) {
    let n = Math.min(max, pci_msi_vec_count(pdev));
    while (n & (n - 1)) n &= n - 1; // multi-message MSI needs a power of two
    if (attempt(n, _msiEnable)) return n;
  }
  throw err;
}

/** Mirrors pcim_setup_msi_release(): a managed device frees its vectors at unbind, once. */
function _setupMsiRelease(pdev: PciDev): void {
  if (!pdev.isManaged || pdev._msiManaged) return;
  devm_add_action(pdev, () => {
    pdev._msiManaged = false;
    pci_free_irq_vectors(pdev);
  });
  pdev._msiManaged = true;
}

/** Mirrors pci_irq_vector(): the virq of vector `nr` (EINVAL when not allocated). */
export function pci_irq_vector(pdev: PciDev, nr: number): number {
  const irq = msi_get_virq(pdev, nr);
  if (irq === 0) throw new Errno("EINVAL", `${pdev.name}: no vector ${nr}`);
  return irq;
}

/** Mirrors pci_free_irq_vectors(): disables MSI/MSI-X and frees the vectors (EBUSY if requested). */
export function pci_free_irq_vectors(pdev: PciDev): void {
  msi_domain_free_irqs_all(pdev);
  if (pdev.msixEnabled) {
    const ctrl = pci_read_config_word(pdev, pdev.msixCap + R.PCI_MSIX_FLAGS);
    pci_write_config_word(pdev, pdev.msixCap + R.PCI_MSIX_FLAGS, ctrl & ~R.PCI_MSIX_FLAGS_ENABLE);
    pdev.msixEnabled = false;
  }
  if (pdev.msiEnabled) {
    const ctrl = pci_read_config_word(pdev, pdev.msiCap + R.PCI_MSI_FLAGS);
    pci_write_config_word(pdev, pdev.msiCap + R.PCI_MSI_FLAGS, ctrl & ~R.PCI_MSI_FLAGS_ENABLE);
    pdev.msiEnabled = false;
  }
  pdev.irq = 0;
}
