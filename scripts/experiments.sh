#!/usr/bin/env bash
# docs/results.md for one dataset: one teacher, then students of one width with no KD,
# pixel KD, wavelet KD (L1, the paper's distance) and wavelet KD (MSE, the authors' code's) for
# every seed, each evaluated on the test set at its final epoch; an alpha sweep of pixel and
# wavelet KD at the first seed; `wkd summarize` for mean ± sd, paired bootstrap intervals of
# the differences and band energies.
#   scripts/experiments.sh sketch2texture "1 2 3 4 5"
#   scripts/experiments.sh stone2metal "1 2 3 4 5"
#   SIZE=128 scripts/experiments.sh sketch2texture 1      # one seed at 128 px, no sweep
# Runs already finished (their generator weights exist) are skipped, so an interrupted call
# continues where it stopped. JOBS students train at once, one thread each (default: the
# number of cores; small networks use one core better than two).
set -euo pipefail
cd "$(dirname "$0")/.."
dataset=${1:?dataset: sketch2texture or stone2metal}
seeds=${2:-"1 2 3 4 5"}
size=${SIZE:-64}
jobs=${JOBS:-$(nproc)}
wkd=${WKD:-bin/wkd}
datasets=${DATASETS:-datasets$([ "$size" = 64 ] || echo "-$size")} # one folder per size
out=${OUT:-results/$dataset-$size}
features=${FEATURES:-runs/texture-features.safetensors}
sweep=${SWEEP:-$([ "$size" = 64 ] && echo yes || echo no)}
mkdir -p "$out"
[ -x "$wkd" ] || make build
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

"$wkd" data --name "$dataset" --size "$size" --out "$datasets" --quiet
if [ ! -f "$features" ]; then
  log "texture feature network -> $features"
  "$wkd" data --name texture-classes --size 64 --out "$datasets" --quiet
  "$wkd" train-features --data "$datasets/texture-classes" --out "$features"
fi

# Students have a quarter of the teacher's width (about 16x fewer MACs) and a smaller D.
case $dataset in
sketch2texture)
  model=(--model pix2pix --netG unet --num-downs $([ "$size" = 128 ] && echo 7 || echo 6))
  teacher=(--ngf 32 --ndf 32 --epochs 5 --epochs-decay 5)
  student=(--ngf 8 --ndf 16 --epochs 2 --epochs-decay 2)
  if [ "$size" = 128 ]; then # four times the pixels: fewer epochs
    teacher=(--ngf 32 --ndf 32 --epochs 3 --epochs-decay 3)
    student=(--ngf 8 --ndf 16 --epochs 1 --epochs-decay 1)
  fi
  # KD share of the generator loss (log's kd_share, median over a run): pixel ~0.4,
  # wavelet L1 ~0.64, wavelet MSE ~0.5
  l1_alpha=100
  mse_alpha=200
  sweep_alphas="25 400"
  ;;
stone2metal)
  model=(--model cyclegan --netG resnet --n-blocks 6)
  teacher=(--ngf 32 --ndf 32 --epochs 3 --epochs-decay 2)
  student=(--ngf 8 --ndf 16 --epochs 1 --epochs-decay 1)
  # KD share of the generator loss (median over a run): pixel ~0.28, wavelet L1 ~0.47,
  # wavelet MSE ~0.26
  l1_alpha=10
  mse_alpha=20
  sweep_alphas="2.5 40"
  ;;
*) echo "unknown dataset $dataset: use sketch2texture or stone2metal" >&2; exit 2 ;;
esac
common=(--data "$datasets/$dataset" --norm instance --load-size "$size" --crop-size "$size"
  --log-every 100 --checkpoint-every 1000 --quiet --log-format json)

done_run() { [ -n "$(ls "$1"/G*.safetensors 2>/dev/null)" ]; }

t="$out/teacher"
if ! done_run "$t"; then
  log "teacher -> $t"
  "$wkd" train "${model[@]}" "${common[@]}" "${teacher[@]}" --seed 1 --out "$t" --overwrite > "$out/teacher.log" 2>&1
fi

# student NAME SEED ALPHA KD-ARGS...: one distillation into $out/seed<SEED>/<NAME>.
student() {
  local name=$1 seed=$2 alpha=$3 dir
  shift 3
  dir="$out/seed$seed/$name"
  [ "$name" = "${name#alpha}" ] || dir="$out/sweep/$name"
  done_run "$dir" && return 0
  mkdir -p "$(dirname "$dir")"
  log "student $name seed $seed -> $dir"
  "$wkd" distill "${model[@]}" "${common[@]}" "${student[@]}" --threads 1 --seed "$seed" \
    --teacher "$t" --alpha "$alpha" "$@" --out "$dir" --overwrite > "$dir.log" 2>&1
}

# Every student of every seed (and the sweep), JOBS at a time.
queue=()
for seed in $seeds; do
  queue+=("none $seed 0 --kd none" "pixel $seed $l1_alpha --kd pixel"
    "wavelet $seed $l1_alpha --kd wavelet" "wavelet-mse $seed $mse_alpha --kd wavelet --kd-loss mse")
done
first=${seeds%% *}
if [ "$sweep" = yes ]; then
  for a in $sweep_alphas; do
    queue+=("alpha$a-pixel $first $a --kd pixel" "alpha$a-wavelet $first $a --kd wavelet")
  done
fi
running=0
for job in "${queue[@]}"; do
  # shellcheck disable=SC2086
  student $job &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait

names=(teacher "student none" "student pixel" "student wavelet" "student wavelet-mse")
evaluate() { # evaluate OUT-FOLDER RUN...
  local dir=$1
  shift
  "$wkd" eval --runs "$(IFS=,; echo "$*")" --names "$(IFS=,; echo "${names[*]}")" \
    --features "$features" --out "$dir" --speed-size 256 --max-samples 200
}
reports=()
for seed in $seeds; do
  s="$out/seed$seed"
  [ -f "$s/report.json" ] || evaluate "$s" "$t" "$s/none" "$s/pixel" "$s/wavelet" "$s/wavelet-mse"
  reports+=("$s/report.json")
done
"$wkd" summarize --out "$out/summary.md" "${reports[@]}"
if [ "$sweep" = yes ]; then
  runs=("$t" "$out/seed$first/pixel" "$out/seed$first/wavelet")
  names=(teacher "pixel alpha $l1_alpha" "wavelet alpha $l1_alpha")
  for a in $sweep_alphas; do
    runs+=("$out/sweep/alpha$a-pixel" "$out/sweep/alpha$a-wavelet")
    names+=("pixel alpha $a" "wavelet alpha $a")
  done
  [ -f "$out/sweep/report.json" ] || evaluate "$out/sweep" "${runs[@]}"
  "$wkd" summarize --out "$out/sweep/summary.md" --compare "" "$out/sweep/report.json"
fi
log "done: $out/summary.md"
