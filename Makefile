# wkd: see README.md. Every target works on a fresh Debian 12 machine with Go 1.26.
GO       ?= go
BIN      := bin/wkd
export CGO_ENABLED ?= 0

# Packages with goroutines of their own: their tests also run under the race detector.
RACE_PKGS := ./ops/ ./allreduce/... ./node/... ./sharding/... ./data/... ./trainer/... ./bench/ ./cmd/wkd/

.PHONY: all build deps test vet fmt-check race bench bench-engine bench-inception bench-infer bench-allreduce bench-net demo cuda-check device-check experiments clean

all: build

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/wkd

deps:
	@scripts/deps.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

race:
	CGO_ENABLED=1 $(GO) test -race -count=1 $(RACE_PKGS)

# The test suite: formatting, vet, every package's tests (PyTorch parity included), the
# cluster tests with real processes on their own (their timing bounds want the cores), then
# the concurrent packages again under the race detector.
test: deps fmt-check vet
	$(GO) test -count=1 -timeout 20m $$($(GO) list ./... | grep -v /cluster_test)
	$(GO) test -count=1 -timeout 10m ./cluster_test/
	$(MAKE) race

bench: bench-engine bench-inception bench-infer bench-allreduce

# One GAN training step in wkd and in PyTorch CPU on the same threads; last line "ratio: X".
bench-engine: deps build
	$(BIN) bench-engine

# FID's Inception-v3 forward (batch 8, resized to 299x299) in wkd and in PyTorch CPU on the
# same threads; last line "ratio: X" (wkd throughput over PyTorch's).
bench-inception: deps build
	$(BIN) bench-inception

# Generator inference (ResNet-9 ngf 64, 32, 16 and U-Net ngf 64, 16 at 256x256, batch 1 and 8)
# in wkd and in PyTorch CPU on the same threads, with each one's share of the machine's FMA
# peak; last line "ratio: X" (wkd over PyTorch throughput, ResNet-9 ngf 16 at batch 1).
bench-infer: deps build
	$(BIN) bench-infer

# The share of a distributed step spent waiting on gradients, overlap off and on; then the ring
# all-reduce over NATS against raw NATS and TCP; last line "busbw/nats: X".
bench-allreduce: build
	$(BIN) bench-overlap
	$(BIN) bench-allreduce

# As root: the ring all-reduce between network namespaces over rate-limited veth links, through one
# NATS server and through a server per node; last line "busbw/link: X" (server per node, worst).
bench-net: build
	$(BIN) bench-net

demo: deps build
	$(BIN) demo

# The CUDA backend: the committed PTX is current; every kernel matches the CPU ops under the
# cudaemu emulator (the .cu sources compiled as C++); the models and the trainer run the same
# step and the same distillation on --device cuda as on cpu (the Device tests); and the real
# `cuda` build compiles, binary included, with headers and stub libraries from Debian's non-free
# packages in .cuda/. Its tests report themselves skipped where no GPU answers (ops/cuda/gpuexec).
CUDA_PKGS := ./ops/cuda/... ./models ./trainer ./cmd/wkd
cuda-check:
	CGO_ENABLED=0 $(GO) test -count=1 ./ops/cuda/...
	CGO_ENABLED=1 $(GO) vet -tags cudaemu $(CUDA_PKGS)
	CGO_ENABLED=1 $(GO) test -count=1 -tags cudaemu ./ops/cuda/...
	CGO_ENABLED=1 $(GO) test -count=1 -tags cudaemu -run Device ./models ./trainer ./cmd/wkd
	bash -c 'set -e; eval "$$(bash scripts/cuda-deps.sh)"; \
	  $(GO) vet -tags cuda $(CUDA_PKGS); $(GO) build -tags cuda ./ops/cuda/...; \
	  tmp=$$(mktemp -d); $(GO) build -tags cuda -o $$tmp/wkd ./cmd/wkd; \
	  $(GO) build -o $$tmp/gpuexec ./ops/cuda/gpuexec; \
	  $(GO) test -count=1 -tags cuda -exec $$tmp/gpuexec -run . ./ops/cuda/...; \
	  $(GO) test -count=1 -tags cuda -exec $$tmp/gpuexec -run Device ./models ./trainer ./cmd/wkd'

# On a GPU machine: build with -tags cuda, parity tests, distillation step against PyTorch.
device-check:
	bash scripts/device-check.sh

# The results of docs/results.md: both texture datasets at 64 px, 5 seeds and an alpha sweep, then one
# seed of sketch2texture at 128 px (results/<dataset>-<size>/summary.md). About 4 hours on
# 2 cores; finished runs are skipped, so an interrupted call continues.
experiments: deps build
	scripts/experiments.sh sketch2texture "1 2 3 4 5"
	scripts/experiments.sh stone2metal "1 2 3 4 5"
	SIZE=128 scripts/experiments.sh sketch2texture 1

-include docker.mk

clean:
	rm -rf bin
