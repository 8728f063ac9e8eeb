#!/usr/bin/env bash
# Reproduces the README's results table for one built-in dataset: one teacher, then students
# of one width with no KD, pixel KD and wavelet KD for each seed, each evaluated on the test
# set at its final epoch; `wkd summarize` gives mean ± sd over the seeds.
#   scripts/experiments.sh edges2shoes-mini "1 2 3"
#   scripts/experiments.sh sneaker2boot "1 2 3"
set -euo pipefail
cd "$(dirname "$0")/.."
dataset=${1:?dataset: edges2shoes-mini or sneaker2boot}
seeds=${2:-"1 2 3"}
wkd=${WKD:-bin/wkd}
src=${FMNIST:-/usr/share/datasets/fashion-mnist}
out=${OUT:-results/$dataset}
mkdir -p "$out"
[ -x "$wkd" ] || make build
"$wkd" data --name "$dataset" --source "$src" --out datasets --quiet
[ -f runs/features.safetensors ] || "$wkd" train-features --source "$src" --out runs/features.safetensors

case $dataset in
edges2shoes-mini)
  model=(--model pix2pix --netG unet --num-downs 5)
  teacher=(--ngf 16 --ndf 32 --epochs 2 --epochs-decay 2 --max-samples 2000)
  student=(--ngf 6 --ndf 16 --epochs 1 --epochs-decay 1 --max-samples 2000 --alpha 100)
  mse_alpha=100 # the authors' MSE distance; alpha gives a KD share of the loss like L1's
  ;;
sneaker2boot)
  model=(--model cyclegan --netG resnet --n-blocks 6)
  teacher=(--ngf 16 --ndf 32 --epochs 2 --epochs-decay 1 --max-samples 1000)
  student=(--ngf 6 --ndf 16 --epochs 1 --epochs-decay 1 --max-samples 1000 --alpha 10)
  mse_alpha=4
  ;;
*) echo "unknown dataset $dataset" >&2; exit 2 ;;
esac
common=(--overwrite --data "datasets/$dataset" --norm instance --load-size 32 --crop-size 32 --log-every 100 --checkpoint-every 2000 --quiet --log-format json)

t="$out/teacher"
[ -f "$t/config.json" ] && [ -n "$(ls "$t"/G*.safetensors 2>/dev/null)" ] || \
  "$wkd" train "${model[@]}" "${common[@]}" "${teacher[@]}" --seed 1 --out "$t" > "$out/teacher.log"
reports=()
for seed in $seeds; do
  mkdir -p "$out/seed$seed"
  runs=("$t"); names=(teacher)
  for kd in none pixel wavelet wavelet-mse; do
    s="$out/seed$seed/$kd"
    kdargs=(--kd "$kd")
    [ "$kd" = wavelet-mse ] && kdargs=(--kd wavelet --kd-loss mse --alpha "$mse_alpha")
    [ -n "$(ls "$s"/G*.safetensors 2>/dev/null)" ] || \
      "$wkd" distill "${model[@]}" "${common[@]}" "${student[@]}" --seed "$seed" --teacher "$t" "${kdargs[@]}" --out "$s" > "$s.log" 2>&1
    runs+=("$s"); names+=("student $kd")
  done
  "$wkd" eval --runs "$(IFS=,; echo "${runs[*]}")" --names "$(IFS=,; echo "${names[*]}")" \
    --features runs/features.safetensors --out "$out/seed$seed" --speed-size 256
  reports+=("$out/seed$seed/report.json")
done
"$wkd" summarize --out "$out/summary.md" "${reports[@]}"
