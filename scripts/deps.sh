#!/usr/bin/env bash
# Installs what wkd's tests, demo and benchmarks need on Debian 12, skipping what is there:
# PyTorch and torchvision (the parity references), numpy and scipy (FID's matrix square root),
# the Fashion-MNIST dataset, and the Go modules; and
# downloads (not installs) the texture photographs' package into wkd's cache, as `wkd data`
# would, so the texture tests run on the real package.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1 || need+=(python3-torch python3-numpy)
/usr/bin/python3 -c 'import PIL' >/dev/null 2>&1 || need+=(python3-pil)
/usr/bin/python3 -c 'import torchvision' >/dev/null 2>&1 || need+=(python3-torchvision)
/usr/bin/python3 -c 'import scipy.linalg' >/dev/null 2>&1 || need+=(python3-scipy)
[ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
command -v jq >/dev/null || need+=(jq)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "deps: installing ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v go >/dev/null; then
  echo "deps: Go 1.26 or newer is required (https://go.dev/doc/install); it is not on PATH" >&2
  exit 1
fi
go mod download
cache=${XDG_CACHE_HOME:-$HOME/.cache}/wkd
if ! ls "$cache"/openarena-081-textures_*.deb >/dev/null 2>&1; then
  mkdir -p "$cache"
  if ! apt-cache show openarena-081-textures >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
  fi
  echo "deps: downloading openarena-081-textures into $cache"
  (cd "$cache" && apt-get download -qq openarena-081-textures 2>&1 | grep -v "unsandboxed" || true)
  ls "$cache"/openarena-081-textures_*.deb >/dev/null
fi
