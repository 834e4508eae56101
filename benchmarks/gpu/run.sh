#!/usr/bin/env bash
# The GPU checks of the kernels, sequence and training issues, in stages that each end well inside a
# 10-minute call on a bare H100/H200 machine without registry access (run benchmarks/gpu/prepare.sh
# first, where pip works, and carry .whl and .cache/gpu).
#
# Usage: OUT=<folder> bash benchmarks/gpu/run.sh STAGE [STAGE ...]
#   tests    the CUDA-only tests (compiled Triton kernels against the reference, BSR, determinism)
#   kernels  graphattn bench kernels: all graphs, bf16 + fp32, PyG eager/compiled, FlexAttention, SDPA
#   seq      graphattn bench seq-patterns: patterns x 1k..64k tokens against FlexAttention and SDPA
#   charlm   examples/seq_char_lm.py at 16k characters, 300 steps per variant
#   layers   graphattn bench layers: layer stacks (GraphAttnConv, GPSLayer) and the core op against PyG
#   models   GPS training-epoch time against the same model from PyG's GPSConv, on ogbg-molhiv
#   train    GPS on ogbg-molhiv with the published config, ${EPOCHS:-10} epochs (a full run needs 100)
# Each stage writes <stage>.log and its results under $OUT (at most 8 files come back per call).
set -uo pipefail
cd "$(dirname "$0")/../.."
STAGES="tests kernels seq charlm layers models train"
for s in "$@"; do
  case " $STAGES " in *" $s "*) ;; *) echo "unknown stage $s ($STAGES)" >&2; exit 2 ;; esac
done
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OUTDATED_IGNORE=1 TRITON_INTERPRET=0
if [ -d .whl ] && ! python3 -c "import ogb, rdkit" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
data=.cache/gpu

stage() {
  local name=$1; shift
  echo "== $name: $*"
  "$@" 2>&1 | tee "$OUT/$name.log"
}

for s in "$@"; do
  case $s in
    tests)   stage tests python3 -m pytest -q -p no:cacheprovider tests/test_triton_gpu.py tests/test_bsr_gpu.py ;;
    kernels) stage kernels python3 -m graphattn bench kernels --molhiv-root "$data/ogbg_molhiv" --out-dir "$OUT" ;;
    seq)     stage seq python3 -m graphattn bench seq-patterns --device cuda --out-dir "$OUT" ;;
    charlm)  stage charlm python3 examples/seq_char_lm.py --device cuda --context 16384 --dim 256 --depth 4 \
               --steps 300 --batch 2 --window 512 --sinks 4 --topk 256 --clusters 8 --eval-windows 16 \
               --out "$OUT/seq_char_lm-cuda.json" ;;
    layers)  stage layers python3 -m graphattn bench layers --device cuda --out-dir "$OUT" ;;
    models)  stage models python3 -m graphattn bench models --dataset ogbg-molhiv --root "$data" --device cuda \
               --out-dir "$OUT" ;;
    train)   stage train python3 -m graphattn train --config gps-molhiv --root "$data" --device cuda \
               --epochs "${EPOCHS:-10}" --no-progress --out "$OUT/molhiv" ;;
  esac
done
