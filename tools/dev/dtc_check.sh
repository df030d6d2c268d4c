#!/bin/sh
# Recompiles every packages/*/testdata/*.dts with dtc and fails when the committed .dtb
# differs (a .dts edited without regenerating its blob). Skips when dtc is not installed
# (apt-get install -y device-tree-compiler). Regenerate a blob with:
#   dtc -q -I dts -O dtb -o packages/kernel/testdata/virt.dtb packages/kernel/testdata/virt.dts
set -eu
cd "$(dirname "$0")/../.."
if ! command -v dtc >/dev/null 2>&1; then
  echo "dtc_check: dtc not installed, skipping"
  exit 0
fi
status=0
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
for dts in packages/*/testdata/*.dts; do
  [ -e "$dts" ] || continue
  dtb="${dts%.dts}.dtb"
  dtc -q -I dts -O dtb -o "$tmp" "$dts"
  if [ ! -e "$dtb" ] || ! cmp -s "$tmp" "$dtb"; then
    echo "dtc_check: $dtb does not match $dts (recompile it with dtc)"
    status=1
  fi
done
[ "$status" -eq 0 ] && echo "dtc_check: all device-tree blobs match their sources"
exit "$status"
