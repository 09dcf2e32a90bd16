#!/usr/bin/env bash
# SyncDiffusion's Table 1 setting on a GPU: w0 in {0, 5, 10, 15, 20} over the paper's six prompts
# (the official repository's sample list), SEEDS seeds each (the paper: 500 per prompt).
#   SEEDS=20 OUT=outputs/syncdiffusion scripts/reproduce_syncdiffusion.sh   (then table.md, table_*.png in OUT)
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-20}
OUT=${OUT:-outputs/syncdiffusion}
seeds=$(seq -s, 0 $((SEEDS - 1)))
prompts=(
  "natural landscape in anime style illustration"
  "a photo of a forest with a misty fog"
  "a photo of a mountain range at twilight"
  "cartoon panorama of spring summer beautiful nature"
  "a photo of a snowy mountain peak with skiers"
  "a photo of a city skyline at night"
)
for i in "${!prompts[@]}"; do
  syncframe run -m --config configs/syncdiffusion/panorama.yaml "prompt=${prompts[$i]}" \
    sync.weight=0,5,10,15,20 "seed=${seeds}" "out=${OUT}/prompt${i}"
done
# The table: SyncDiffusion's protocol over every run (pip install -e ".[eval,fid]"; the Inception and
# CLIP weights download once, or give local copies: metrics.inception=FILE metrics.clip=FOLDER).
syncframe eval "runs=${OUT}" "out=${OUT}/table.csv" metrics=all "reference=${OUT}/reference" \
  "reference.make=${REFERENCE:-500}" metrics.clip=openai/clip-vit-base-patch16
