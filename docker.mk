# Docker targets (included from the Makefile): the FROM scratch image and the docker-compose
# cluster that docs/docker.md describes. Nothing here pulls an image: the binary is built on this host.
#
#   make image                 build/wkd (static) and the image wkd:latest
#   make cluster-env           .env with a fresh gossip key and NATS token (never overwrites)
#   make cluster-data          the demo dataset and a small teacher, into the volumes
#   make cluster-up N=3        the whole cluster, N training nodes, in the background
#   make cluster-scale N=4     grow or shrink the running cluster to N nodes
#   make cluster-logs          follow the merged log of every node
#   make cluster-down          stop and remove the containers (volumes are kept)
#   make cluster-clean         also remove the volumes (datasets, runs, logs)
#   make test-compose          scripts/test-compose.sh: the cluster for real (skips without Docker)
N       ?= 3
COMPOSE ?= scripts/cluster.sh compose

.PHONY: image cluster-env cluster-data cluster-up cluster-scale cluster-logs cluster-down cluster-clean test-compose

image:
	@scripts/cluster.sh image

cluster-env:
	@scripts/cluster.sh env .env

cluster-data: image
	@scripts/cluster.sh data

cluster-up: image
	$(COMPOSE) up -d --scale node=$(N)
	@echo "cluster up with $(N) nodes: 'make cluster-logs' follows it, 'make cluster-scale N=...' resizes it"

cluster-scale:
	$(COMPOSE) up -d --no-deps --scale node=$(N) node

cluster-logs:
	$(COMPOSE) logs -f --no-log-prefix --tail 50 logs

cluster-down:
	$(COMPOSE) down --remove-orphans

cluster-clean:
	$(COMPOSE) down -v --remove-orphans

test-compose:
	@scripts/test-compose.sh
