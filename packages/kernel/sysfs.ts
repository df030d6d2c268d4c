/**
 * sysfs: where drivers publish attributes and user space (the perf tool, first) reads them by
 * path. Mirrors the part of `fs/sysfs/group.c` and `fs/sysfs/file.c` (over kernfs) a driver
 * uses: `struct attribute_group` with a directory `name` and `is_visible`, `device_add_groups()`
 * / `device_remove_groups()`, and the device's link under `/sys/bus/<bus>/devices/`; plus the
 * user side of the files (read, readdir, write) that a process gets through open(2)/read(2).
 *
 * One tree per {@linkcode Kernel} (`kernel.sysfs`); nothing is global.
 *
 * Layout: a device's directory is `/sys/devices/<ancestor>/.../<name>` (the names of its parent
 * chain, without Linux's `platform/` or `pci0000:00/` roots) and, when it sits on a bus,
 * `/sys/bus/<bus>/devices/<name>` links to it. Entries list in the order they were created
 * (kernfs orders them by name hash; no reader here may depend on either).
 *
 * @module
 */
import type { Device } from "./device.ts";
import { Errno } from "./errno.ts";
import type { Kernel } from "./kernel.ts";

/**
 * struct device_attribute (with its struct attribute): one file in a device's directory.
 * `show` returns the file's whole content (what sysfs_emit() puts in the page, newline
 * included); `store` takes what was written and throws an errno to refuse it.
 */
export interface DeviceAttribute {
  /** attr.name: the file name. */
  readonly name: string;
  /** attr.mode: permission bits, e.g. `0o444`; `is_visible` may override them. */
  readonly mode: number;
  /** Produces the file's content. */
  show?(dev: Device, attr: DeviceAttribute): string;
  /** Consumes a write to the file. */
  store?(dev: Device, attr: DeviceAttribute, buf: string): void;
}

/**
 * struct attribute_group: attributes created together, in a subdirectory when `name` is set.
 * `is_visible` returns the mode an attribute gets, 0 to leave it out; it runs when the group is
 * created (as in Linux, where only sysfs_update_group() asks again).
 */
export interface AttributeGroup {
  /** Subdirectory name (`"format"`, `"events"`), or none for the device's own directory. */
  readonly name?: string;
  /** The attributes, in the order their files are created. */
  readonly attrs: readonly DeviceAttribute[];
  /** Mode for `attr` (the `n`th of `attrs`), or 0 to hide it. */
  is_visible?(dev: Device, attr: DeviceAttribute, n: number): number;
}

interface _Dir {
  readonly kind: "dir";
  readonly children: Map<string, _Node>;
}

interface _File {
  readonly kind: "file";
  readonly mode: number;
  readonly dev: Device;
  readonly attr: DeviceAttribute;
}

interface _Link {
  readonly kind: "link";
  /** Absolute path of the target. */
  readonly target: string;
}

type _Node = _Dir | _File | _Link;

/** Symlinks followed in one lookup before ELOOP (Linux's MAXSYMLINKS is 40). */
const MAX_LINKS = 40;

/** The sysfs tree of one kernel (kernfs root + the sysfs directories of its devices). */
export class Sysfs {
  /**
   * `/sys`.
   *
   * @ignore package-private
   */
  readonly _root: _Dir = _dir();
  /**
   * Device → path of its directory, for the devices that have one.
   *
   * @ignore package-private
   */
  readonly _devDirs: Map<Device, string> = new Map();
}

function _dir(): _Dir {
  return { kind: "dir", children: new Map() };
}

function _split(path: string): string[] {
  if (!path.startsWith("/sys")) throw new Errno("ENOENT", `${path}: not under /sys`);
  const parts = path.split("/").filter((p) => p !== "" && p !== ".");
  if (parts[0] !== "sys") throw new Errno("ENOENT", `${path}: not under /sys`);
  return parts.slice(1);
}

/** Walks `path`, following links; `ENOENT`/`ENOTDIR` as path_lookup would fail. */
function _lookup(fs: Sysfs, path: string): _Dir | _File {
  let parts = _split(path);
  let node: _Node = fs._root;
  let links = 0;
  for (let i = 0; i < parts.length; i++) {
    if (node.kind !== "dir") throw new Errno("ENOTDIR", `${path}: not a directory`);
    if (parts[i] === "..") throw new Errno("ENOENT", `${path}: '..' is not resolved here`);
    const next: _Node | undefined = node.children.get(parts[i]);
    if (next === undefined) throw new Errno("ENOENT", `${path}: no such file or directory`);
    if (next.kind === "link") {
      if (++links > MAX_LINKS) throw new Errno("ENOENT", `${path}: too many links`);
      parts = [..._split(next.target), ...parts.slice(i + 1)];
      node = fs._root;
      i = -1;
      continue;
    }
    node = next;
  }
  return node;
}

/** The directory at `parts` (under /sys), made with its parents when `create`. */
function _dirAt(fs: Sysfs, parts: readonly string[], create: boolean): _Dir | null {
  let d = fs._root;
  for (const p of parts) {
    let next = d.children.get(p);
    if (next === undefined) {
      if (!create) return null;
      next = _dir();
      d.children.set(p, next);
    }
    if (next.kind !== "dir") throw new Errno("EEXIST", `sysfs: ${p} is not a directory`);
    d = next;
  }
  return d;
}

function _devicePath(dev: Device): string[] {
  const names: string[] = [];
  for (let d: Device | null = dev; d !== null; d = d.parent) names.unshift(d.name);
  return ["devices", ...names];
}

/** The device's directory, made (with its bus link) on first use. */
function _deviceDir(dev: Device): _Dir {
  const fs = dev.kernel.sysfs;
  const parts = _devicePath(dev);
  if (!fs._devDirs.has(dev)) {
    const parent = _dirAt(fs, parts.slice(0, -1), true)!;
    if (parent.children.has(dev.name)) {
      throw new Errno("EEXIST", `sysfs: cannot create duplicate filename '/${parts.join("/")}'`);
    }
    parent.children.set(dev.name, _dir());
    fs._devDirs.set(dev, `/sys/${parts.join("/")}`);
    if (dev.bus !== null) {
      const links = _dirAt(fs, ["bus", dev.bus.name, "devices"], true)!;
      links.children.set(dev.name, { kind: "link", target: `/sys/${parts.join("/")}` });
    }
  }
  return _dirAt(fs, parts, false)!;
}

/** Mirrors sysfs_create_group(): the group's (sub)directory and its visible attributes. */
function _createGroup(dev: Device, grp: AttributeGroup): void {
  let dir = _deviceDir(dev);
  if (grp.name !== undefined) {
    if (dir.children.has(grp.name)) {
      throw new Errno("EEXIST", `sysfs: cannot create duplicate filename '${grp.name}'`);
    }
    const sub = _dir();
    dir.children.set(grp.name, sub);
    dir = sub;
  }
  const made: string[] = [];
  try {
    grp.attrs.forEach((attr, n) => {
      const mode = grp.is_visible === undefined ? attr.mode : grp.is_visible(dev, attr, n);
      if (mode === 0) return;
      if (dir.children.has(attr.name)) {
        throw new Errno("EEXIST", `sysfs: cannot create duplicate filename '${attr.name}'`);
      }
      dir.children.set(attr.name, { kind: "file", mode, dev, attr });
      made.push(attr.name);
    });
  } catch (e) {
    _removeGroup(dev, grp, made);
    throw e;
  }
}

/** Mirrors sysfs_remove_group(); `only` limits it to the files a failed create made. */
function _removeGroup(dev: Device, grp: AttributeGroup, only?: readonly string[]): void {
  const fs = dev.kernel.sysfs;
  const parts = _devicePath(dev);
  const dir = _dirAt(fs, parts, false);
  if (dir === null) return;
  if (grp.name !== undefined) {
    dir.children.delete(grp.name);
    return;
  }
  for (const attr of grp.attrs) {
    const node = dir.children.get(attr.name);
    if (node?.kind !== "file" || node.attr !== attr) continue;
    if (only === undefined || only.includes(attr.name)) dir.children.delete(attr.name);
  }
}

/**
 * Mirrors device_add_groups(): creates `groups` in the directory of `dev`, all or none
 * (`EEXIST` for a name already there).
 *
 * DIVERGENCE: Linux's device_add() makes the device's directory and its bus link; this
 * kernel's device_add() has no sysfs side, so the first group a device gets makes them.
 *
 * @example A PMU-like device with a format group, read back by path
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   bus_register, Device, device_add, device_add_groups, Kernel, sysfs_read, sysfs_readdir,
 * } from "@iommu-lab/kernel";
 * import { TestRam } from "@iommu-lab/kernel/testing";
 *
 * const kernel = new Kernel({ mem: new TestRam(0x8000_0000, 1 << 24) });
 * const bus = bus_register(kernel, { name: "event_source", match: () => false });
 * const dev = new Device(kernel, { name: "demo_pmu", bus });
 * device_add(dev);
 * device_add_groups(dev, [{
 *   name: "format",
 *   attrs: [{ name: "event", mode: 0o444, show: () => "config:0-14\n" }],
 * }]);
 * assert.deepEqual(sysfs_readdir(kernel, "/sys/bus/event_source/devices"), ["demo_pmu"]);
 * assert.equal(
 *   sysfs_read(kernel, "/sys/bus/event_source/devices/demo_pmu/format/event"),
 *   "config:0-14\n",
 * );
 * ```
 */
export function device_add_groups(dev: Device, groups: readonly AttributeGroup[]): void {
  const done: AttributeGroup[] = [];
  try {
    for (const grp of groups) {
      _createGroup(dev, grp);
      done.push(grp);
    }
  } catch (e) {
    device_remove_groups(dev, done);
    throw e;
  }
}

/**
 * Mirrors device_remove_groups(): removes `groups` from the directory of `dev`.
 *
 * DIVERGENCE: a directory left empty goes too, with its bus link (Linux removes them in
 * device_del(), see {@linkcode device_add_groups}).
 */
export function device_remove_groups(dev: Device, groups: readonly AttributeGroup[]): void {
  const fs = dev.kernel.sysfs;
  if (!fs._devDirs.has(dev)) return;
  for (const grp of groups) _removeGroup(dev, grp);
  const parts = _devicePath(dev);
  if (_dirAt(fs, parts, false)!.children.size !== 0) return;
  fs._devDirs.delete(dev);
  if (dev.bus !== null) {
    _dirAt(fs, ["bus", dev.bus.name, "devices"], false)?.children.delete(dev.name);
  }
  // Drop the directory, then ancestors no other device keeps.
  for (let n = parts.length; n > 1; n--) {
    const parent = _dirAt(fs, parts.slice(0, n - 1), false)!;
    const child = parent.children.get(parts[n - 1]) as _Dir;
    if (child.children.size !== 0) break;
    parent.children.delete(parts[n - 1]);
  }
}

/**
 * read(2) of a whole sysfs file: the attribute's `show`. `ENOENT` when the path does not exist,
 * `EISDIR` for a directory, `EACCES` for a file without read permission, `EIO` for one without
 * `show`.
 */
export function sysfs_read(kernel: Kernel, path: string): string {
  const node = _lookup(kernel.sysfs, path);
  if (node.kind === "dir") throw new Errno("EISDIR", `${path}: is a directory`);
  if ((node.mode & 0o444) === 0) throw new Errno("EACCES", `${path}: not readable`);
  if (node.attr.show === undefined) throw new Errno("EIO", `${path}: no show()`);
  return node.attr.show(node.dev, node.attr);
}

/**
 * write(2) to a sysfs file: the attribute's `store`, which may refuse the value with an errno.
 * `EACCES` for a file without write permission or `store` (kernfs refuses the open).
 */
export function sysfs_write(kernel: Kernel, path: string, buf: string): void {
  const node = _lookup(kernel.sysfs, path);
  if (node.kind === "dir") throw new Errno("EISDIR", `${path}: is a directory`);
  if ((node.mode & 0o222) === 0 || node.attr.store === undefined) {
    throw new Errno("EACCES", `${path}: not writable`);
  }
  node.attr.store(node.dev, node.attr, buf);
}

/** getdents(2) of a sysfs directory: entry names in creation order. `ENOTDIR` for a file. */
export function sysfs_readdir(kernel: Kernel, path: string): string[] {
  const node = _lookup(kernel.sysfs, path);
  if (node.kind !== "dir") throw new Errno("ENOTDIR", `${path}: not a directory`);
  return [...node.children.keys()];
}
