#!/usr/bin/env bash
# Makes the CUDA 11.8 headers and libraries (cuda.h, cublas_v2.h, libcuda, libcudart, libcublas)
# available to `go build -tags cuda` WITHOUT touching the system's apt configuration: a private
# apt setup (own sources.list, lists and cache in a temp dir) built from the machine's own Debian
# mirror and suite plus the contrib and non-free components, `apt-get download` of the packages,
# and `dpkg -x` into .cuda/ (git-ignored). Prints `export CGO_...` lines to eval:
#
#   eval "$(bash scripts/cuda-deps.sh)"
#   go build -tags cuda ./ops/cuda/...
#
# With WKD_CUDA_NVCC=1 it also fetches Debian's nvidia-cuda-toolkit (nvcc) into .cuda/ so
# `go generate -tags cuda ./ops/cuda/` can produce the PTX on a machine without CUDA installed.
# Idempotent: skips what is already extracted. Progress goes to stderr, exports to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD/.cuda"
mkdir -p "$root"

log() { echo "cuda-deps: $*" >&2; }

# Headers and link-time libraries. libcuda1 is the real driver library (not the link stub), so
# test binaries start on a machine without a GPU and cuInit reports why (ops/cuda/gpuexec turns
# that into a skip); on a GPU machine use the system's driver instead (scripts/device-check.sh).
pkgs=(nvidia-cuda-dev libcudart11.0 libcublas11 libcublaslt11 libcuda1 libnvidia-ptxjitcompiler1)
[ "${WKD_CUDA_NVCC:-0}" = 1 ] && pkgs+=(nvidia-cuda-toolkit libnvvm4)

# One stamp per extracted package, so adding nvcc later fetches only what is missing.
missing=()
for p in "${pkgs[@]}"; do
  [ -e "$root/.pkg-$p" ] || missing+=("$p")
done

mirror_and_suite() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk '
      function flush() { if (uri != "" && suite != "" && uri !~ /security/ && !done) { print uri, suite; done=1 } uri=""; suite="" }
      /^[[:space:]]*$/ { flush(); next }
      /^[[:space:]]*#/ { next }
      tolower($1) == "uris:"   { uri = $2 }
      tolower($1) == "suites:" { suite = $2 }
      END { flush() }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    awk '$1 == "deb" {
           i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
           if ($i !~ /security/ && $(i+1) !~ /-(updates|security|backports)$/) { print $i, $(i+1); exit }
         }' "$f"
  done
}

if [ ${#missing[@]} -gt 0 ]; then
  read -r mirror suite < <(mirror_and_suite | head -n1) || true
  if [ -z "${mirror:-}" ] || [ -z "${suite:-}" ]; then
    log "no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d/; add one and rerun" >&2
    exit 1
  fi
  log "using $mirror $suite (main contrib non-free non-free-firmware), private apt state"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/parts" "$tmp/debs"
  echo "deb $mirror $suite main contrib non-free non-free-firmware" >"$tmp/sources.list"
  # The download sandbox user (_apt) must be able to write into the private dirs.
  chmod -R a+rwX "$tmp"
  apt_opts=(
    -o "Dir::Etc::SourceList=$tmp/sources.list"
    -o "Dir::Etc::SourceParts=$tmp/parts"
    -o "Dir::State::Lists=$tmp/lists"
    -o "Dir::Cache=$tmp/cache"
    -o "Dir::State::status=/var/lib/dpkg/status"
    -o "Debug::NoLocking=1"
    -o "APT::Get::List-Cleanup=0"
  )
  apt-get "${apt_opts[@]}" -qq update >&2
  # Resolve "pkg-" (optional) names: keep only packages the archive knows.
  for p in "${missing[@]}"; do
    if ! apt-cache "${apt_opts[@]}" show "$p" >/dev/null 2>&1; then
      log "package $p is not in $mirror $suite (contrib/non-free); cannot continue"
      exit 1
    fi
  done
  (cd "$tmp/debs" && apt-get "${apt_opts[@]}" -qq download "${missing[@]}" >&2)
  for p in "${missing[@]}"; do
    for deb in "$tmp/debs/${p}_"*.deb; do
      log "extracting $(basename "$deb")"
      dpkg -x "$deb" "$root"
    done
    touch "$root/.pkg-$p"
  done
fi

inc="$root/usr/include"
lib="$root/usr/lib/x86_64-linux-gnu"
drv="$lib/nvidia/current"
for need in "$inc/cuda.h" "$inc/cublas_v2.h" "$drv/libcuda.so" "$lib/libcublas.so" "$lib/libcudart.so"; do
  [ -e "$need" ] || { log "missing $need after extraction; remove $root and rerun" ; exit 1; }
done

echo "export CGO_ENABLED=1"
echo "export CGO_CFLAGS='-I$inc'"
echo "export CGO_LDFLAGS='-L$lib -L$drv -Wl,-rpath-link,$lib:$drv'"
# Only for running test binaries on this (GPU-less) machine. On a GPU machine use the system's
# CUDA and driver instead: a libcuda that does not match the kernel module refuses to start.
echo "export LD_LIBRARY_PATH='$lib:$drv'\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
tk="$root/usr/lib/nvidia-cuda-toolkit/bin"
if [ -x "$tk/nvcc" ]; then
  # Debian's nvcc.profile is a link to /etc/nvcc.profile with absolute paths; point a private
  # one at the extracted tree instead.
  if [ -L "$tk/nvcc.profile" ] || [ ! -e "$tk/nvcc.profile" ]; then
    rm -f "$tk/nvcc.profile"
    cat >"$tk/nvcc.profile" <<'PROFILE'
NVVMIR_LIBRARY_DIR = $(_HERE_)/../libdevice
PATH		+= $(_HERE_):
INCLUDES	+= "-I$(_HERE_)/../../../include" $(_SPACE_)
LIBRARIES	=+ $(_SPACE_) "-L$(_HERE_)/../../x86_64-linux-gnu/stubs" "-L$(_HERE_)/../../x86_64-linux-gnu"
PROFILE
  fi
  # Debian's gcc wrappers beside nvcc want gcc <= 11; name the system compiler (PTX only needs
  # its preprocessor; kernels/gen.sh passes -allow-unsupported-compiler).
  echo "export NVCC='$tk/nvcc'"
  echo "export NVCC_CCBIN='$(command -v g++ || command -v c++ || echo g++)'"
fi
