#!/usr/bin/env bash
# Prepares, on a machine with pip access, what benchmarks/gpu/run.sh needs on a bare GPU machine
# that cannot reach a package registry:
#   .whl/         wheels of the packages such images lack (ogb and its small helpers, rdkit)
#   .cache/gpu/   copies of the datasets (ogbg_molhiv, peptides-func), writable
# Usage: bash benchmarks/gpu/prepare.sh <shared data folder, e.g. ../shared/data> [python version, default 3.12]
# Then carry ".whl" and ".cache/gpu" with the working tree (both are git-ignored).
set -euo pipefail
data=${1:?usage: prepare.sh <data folder> [python version]}
pyver=${2:-3.12}
cd "$(dirname "$0")/../.."

mkdir -p .whl .cache/gpu
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
  "${platforms[@]}" -d .whl ogb==1.3.6 outdated==0.2.2 littleutils==0.2.4 rdkit==2026.9.1

for src in "$data/ogb/ogbg_molhiv" "$data/lrgb-peptides-func"; do
  [ -d "$src" ] || { echo "missing $src" >&2; exit 1; }
done
rm -rf .cache/gpu/ogbg_molhiv .cache/gpu/peptides-func
cp -r "$data/ogb/ogbg_molhiv" .cache/gpu/ogbg_molhiv
cp -r "$data/lrgb-peptides-func" .cache/gpu/peptides-func
chmod -R u+w .cache/gpu
du -sh .whl .cache/gpu
