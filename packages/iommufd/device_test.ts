import assert from "node:assert/strict";
import {
  IOMMU_CAP_CACHE_COHERENCY,
  iommu_get_domain_for_dev,
  iommu_group_get,
} from "@iommu-lab/iommu";
import { close, destroy, fails, hwpt, ioas, mock, sys } from "./_test_fixture.ts";
import {
  iommufd_device_attach,
  iommufd_device_bind,
  iommufd_device_detach,
  iommufd_device_replace,
  iommufd_device_unbind,
  type IommufdDevice,
} from "./device.ts";
import { iommufd_get_object, iommufd_put_object } from "./iommufd_private.ts";
import { iommufd_fops_open } from "./main.ts";
import { MockDev } from "./selftest.ts";
import { IOMMU_GET_HW_INFO, iommu_hw_info, sizeof } from "./uapi.ts";

/** The mock device behind device object `idev_id`. */
function device(s: ReturnType<typeof sys>, idev_id: number): IommufdDevice {
  const idev = iommufd_get_object(s.fd, idev_id, 0) as IommufdDevice;
  iommufd_put_object(s.fd, idev);
  return idev;
}

Deno.test("iommufd_device_bind(): the IOMMU must be cache coherent (EINVAL); another iommufd cannot take an owned device (EPERM)", () => {
  const s = sys();
  const id = ioas(s);
  const dev = device(s, mock(s, id).idev).dev;
  assert.ok(dev instanceof MockDev);
  const other = iommufd_fops_open(s.fd.iommufd, s.mm);
  fails("EPERM", () => iommufd_device_bind(other, dev));
  const capable = s.st.ops.capable!;
  s.st.ops.capable = (d, cap) => cap !== IOMMU_CAP_CACHE_COHERENCY && capable(d, cap);
  fails("EINVAL", () => iommufd_device_bind(other, dev));
  s.st.ops.capable = capable;
  other.close();
  close(s);
});

Deno.test("a bound device blocks DMA until attached, and unbinding gives it back to its default domain", () => {
  const s = sys();
  const id = ioas(s);
  const ids = mock(s, id);
  const idev = device(s, ids.idev);
  const group = iommu_group_get(idev.dev)!;
  assert.equal(group.owner, s.fd);
  const h = iommufd_get_object(s.fd, ids.hwpt, 0) as unknown as { domain: unknown };
  iommufd_put_object(s.fd, h as never);
  assert.equal(iommu_get_domain_for_dev(idev.dev), h.domain);
  destroy(s, ids.stdev);
  close(s);
});

Deno.test("attach: ENOENT for no such object, EINVAL for one that is no IOAS or HWPT, EBUSY attached twice; replace needs an attachment", () => {
  const s = sys();
  const id = ioas(s);
  // The mock device of a MOCK_DOMAIN, taken off its HWPT: bound, not attached.
  const ids = mock(s, id);
  const idev = device(s, ids.idev);
  const idev_id = ids.idev;
  iommufd_device_detach(idev);
  fails("EINVAL", () => iommufd_device_replace(idev, id));
  fails("ENOENT", () => iommufd_device_attach(idev, 999));
  fails("EINVAL", () => iommufd_device_attach(idev, idev_id));
  const pt = iommufd_device_attach(idev, id);
  fails("EBUSY", () => iommufd_device_attach(idev, pt));
  // An attached device cannot be destroyed or unbound; nor its HWPT destroyed.
  fails("EBUSY", () => destroy(s, idev_id));
  fails("EBUSY", () => iommufd_device_unbind(idev));
  const other = hwpt(s, idev_id, id);
  fails("EBUSY", () => destroy(s, pt));
  assert.equal(iommufd_device_replace(idev, other), other);
  // Leaving the automatic HWPT destroyed it.
  fails("ENOENT", () => destroy(s, pt));
  iommufd_device_detach(idev);
  destroy(s, other);
  // The selftest object unbinds its device.
  destroy(s, ids.stdev);
  close(s);
});

Deno.test("GET_HW_INFO: EOPNOTSUPP for flags or __reserved, ENOENT for an object that is no device, EFAULT for a bad buffer", () => {
  const s = sys();
  const id = ioas(s);
  const ids = mock(s, id);
  const info = (o: Partial<iommu_hw_info>) =>
    s.fd.ioctl(IOMMU_GET_HW_INFO, {
      size: sizeof(iommu_hw_info),
      flags: 0,
      dev_id: ids.idev,
      data_len: 8,
      data_uptr: BigInt(s.buf),
      out_data_type: 0,
      __reserved: 0,
      out_capabilities: 0n,
      ...o,
    } as iommu_hw_info);
  fails("EOPNOTSUPP", () => info({ flags: 1 }));
  fails("EOPNOTSUPP", () => info({ __reserved: 1 }));
  fails("ENOENT", () => info({ dev_id: id }));
  fails("EFAULT", () => info({ data_uptr: 0n }));
  // What goes back stops at the caller's size: a 32-byte caller has no out_capabilities.
  const old = {
    size: 32,
    flags: 0,
    dev_id: ids.idev,
    data_len: 0,
    data_uptr: 0n,
    out_data_type: 0,
    __reserved: 0,
    out_capabilities: 99n,
  };
  s.fd.ioctl(IOMMU_GET_HW_INFO, old);
  assert.equal(old.out_capabilities, 99n);
  assert.equal(old.data_len, 8); // the length the driver has, for the next call
  old.size = sizeof(iommu_hw_info);
  old.data_len = 0;
  s.fd.ioctl(IOMMU_GET_HW_INFO, old);
  assert.equal(old.out_capabilities, 1n);
  close(s);
});
