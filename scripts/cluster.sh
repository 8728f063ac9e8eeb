#!/usr/bin/env bash
# Helpers for the docker-compose cluster (see docs/docker.md); the docker.mk targets call them.
#
#   scripts/cluster.sh image       build the static binary, stage build/docker/, build wkd:latest
#   scripts/cluster.sh env [FILE]  write a .env with a fresh gossip key and NATS token (never overwrites)
#   scripts/cluster.sh data        run the one-shot data and teacher services, fail if one fails
#   scripts/cluster.sh compose ... docker-compose (v1) or `docker compose` (v2), whichever is here
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
IMAGE=${WKD_IMAGE:-wkd:latest}
STAGE=build/docker

# compose runs docker-compose v1 when installed, else the v2 plugin.
compose() {
	if command -v docker-compose >/dev/null 2>&1; then
		docker-compose "$@"
	elif docker compose version >/dev/null 2>&1; then
		docker compose "$@"
	else
		echo "cluster.sh: neither docker-compose nor 'docker compose' is installed" >&2
		return 1
	fi
}

binary() {
	mkdir -p build
	echo "building build/wkd (static, CGO_ENABLED=0)" >&2
	CGO_ENABLED=0 "$GO" build -trimpath -o build/wkd ./cmd/wkd
}

# stage lays out the build context the Dockerfile copies: the binary, /etc files for the
# nonroot user, CA certificates (TLS to a remote NATS), and folders the user owns.
stage() {
	rm -rf "$STAGE"
	mkdir -p "$STAGE/rootfs/etc/ssl/certs" "$STAGE/rootfs/tmp" \
		"$STAGE/owned/datasets" "$STAGE/owned/runs" "$STAGE/owned/logs" "$STAGE/owned/home/nonroot"
	cp build/wkd "$STAGE/wkd"
	printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$STAGE/rootfs/etc/passwd"
	printf 'root:x:0:\nnonroot:x:65532:\n' >"$STAGE/rootfs/etc/group"
	if [ -r /etc/ssl/certs/ca-certificates.crt ]; then
		cp /etc/ssl/certs/ca-certificates.crt "$STAGE/rootfs/etc/ssl/certs/"
	else
		echo "cluster.sh: no /etc/ssl/certs/ca-certificates.crt on this host: the image has no CA certificates (only matters for TLS)" >&2
	fi
	chmod 1777 "$STAGE/rootfs/tmp"
	chmod 0755 "$STAGE/owned"/* "$STAGE/owned/home/nonroot"
}

image() {
	binary
	stage
	echo "building image $IMAGE (FROM scratch: nothing is pulled)" >&2
	# The legacy builder: it needs no buildx plugin and, from scratch, no registry. Its
	# deprecation notice is noise: show the output only when the build fails.
	local out
	if ! out=$(DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" . 2>&1); then
		echo "$out" >&2
		return 1
	fi
	# The image it replaced, now untagged, is of no use.
	docker image prune -f --filter label=org.opencontainers.image.title=wkd >/dev/null || :
	docker image inspect -f '{{.RepoTags}} {{.Size}} bytes' "$IMAGE"
}

# env writes FILE (default .env) with a new gossip key and NATS token; it refuses to replace one.
env_file() {
	local f=${1:-.env}
	if [ -e "$f" ]; then
		echo "cluster.sh: $f exists; not replacing it (delete it first to make new secrets)" >&2
		return 1
	fi
	[ -x build/wkd ] || binary
	local key token
	key=$(build/wkd keygen)
	token=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
	umask 077
	{
		echo "# Secrets of the docker-compose cluster (made by 'make cluster-env'); keep this file private."
		echo "WKD_GOSSIP_KEY=$key"
		echo "WKD_NATS_TOKEN=$token"
		echo "# Optional settings: see .env.example."
	} >"$f"
	echo "wrote $f (mode 600)" >&2
}

# data runs the one-shot services (data, then teacher) in the foreground and checks both.
data() {
	compose up data teacher
	local svc id code
	for svc in data teacher; do
		id=$(compose ps -q "$svc")
		code=$(docker inspect -f '{{.State.ExitCode}}' "$id" 2>/dev/null || echo "?")
		if [ "$code" != 0 ]; then
			echo "cluster.sh: the $svc service exited with $code; see: docker-compose logs $svc" >&2
			return 1
		fi
	done
}

case "${1:-}" in
image) image ;;
data) data ;;
binary) binary ;;
stage) stage ;;
env) env_file "${2:-}" ;;
compose)
	shift
	compose "$@"
	;;
*)
	echo "usage: scripts/cluster.sh image|binary|stage|env [FILE]|data|compose ARGS..." >&2
	exit 2
	;;
esac
