#!/usr/bin/env bash
# test-compose.sh: the docker-compose cluster for real (make test-compose).
#
#   (a) `up --scale node=3` trains a short distillation to its end: every node exits 0, the
#       central log (logs service, logs volume) holds lines from every node, checkpoints and
#       the final generator are in the runs volume, the replicas' state digests agree;
#   (b) in a long run, scaling 3 -> 4 and `docker kill` of a node are survived: each gives a
#       new agreed view (higher generation, right size), training goes on, the joiner holds
#       the same state as the others;
#   (c) `docker network disconnect` of a node for longer than the failure timeouts: the others
#       go on without it; after `docker network connect` it rejoins and catches up;
#   (d) `down` (volumes kept) and `up` again: the new nodes resume from the checkpoint that
#       rank 0 wrote when stopped.
# Replicas must stay bitwise identical throughout: every node logs a digest of its state
# (field state_sha) every --log-every steps; all lines of one (view generation, step) must agree.
#
# Without a Docker engine it prints "test-compose: skipped: ..." and exits 0. It uses its own
# project name, secrets and subnet, and always removes its containers, network and volumes.
# Environment: WKD_TEST_NO_BUILD=1 reuses the image wkd:latest instead of rebuilding it.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! info_err=$(docker info --format '{{.ServerVersion}}' 2>&1 >/dev/null); then
	echo "test-compose: skipped: no Docker engine answered ($(echo "$info_err" | tail -n1))"
	exit 0
fi
if command -v docker-compose >/dev/null 2>&1; then
	COMPOSE=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
	COMPOSE=(docker compose)
else
	echo "test-compose: FAIL: a Docker engine answered but neither docker-compose nor 'docker compose' is installed"
	exit 1
fi

if ! command -v jq >/dev/null 2>&1; then
	echo "test-compose: FAIL: jq is needed to read the JSON logs (apt install jq)"
	exit 1
fi

T0=$(date +%s)
PASS=0
FAIL=0
PROJECT="wkdtest$$$RANDOM"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/wkd-test-compose.XXXXXX")
LOG=$TMP/wkd.log
NET="${PROJECT}_default"
KEPT="${TMPDIR:-/tmp}/wkd-test-compose-$PROJECT.log" # the central log, kept on failure

say() { printf '[%3ds] %s\n' $(($(date +%s) - T0)) "$*"; }
check() { # check NAME CONDITION-EXIT-STATUS DETAIL
	if [ "$2" -eq 0 ]; then
		PASS=$((PASS + 1))
		say "PASS $1${3:+: $3}"
	else
		FAIL=$((FAIL + 1))
		say "FAIL $1${3:+: $3}"
	fi
}
dc() { "${COMPOSE[@]}" -p "$PROJECT" -f docker-compose.yml -f "$TMP/override.yml" --env-file "$TMP/test.env" "$@"; }

cleanup() {
	local rc=$?
	if [ "$FAIL" -gt 0 ] || [ "$rc" -ne 0 ]; then
		fetch_log
		echo "---- last 30 lines of the central log (all of it: $KEPT) ----"
		tail -n 30 "$LOG" 2>/dev/null | cut -c1-300
		cp "$LOG" "$KEPT" 2>/dev/null
		echo "---- docker-compose ps ----"
		dc ps 2>/dev/null
	fi
	say "tearing down project $PROJECT (containers, network, volumes)"
	dc down -v --remove-orphans -t 5 >/dev/null 2>&1 || say "warning: docker-compose down failed"
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The image (a static build here, FROM scratch there: nothing is pulled).
if [ "${WKD_TEST_NO_BUILD:-}" != 1 ]; then
	say "building the binary and the image"
	scripts/cluster.sh image >/dev/null || {
		check "image builds" 1
		exit 1
	}
fi
docker image inspect wkd:latest >/dev/null 2>&1 || {
	check "image wkd:latest exists" 1 "run make image"
	exit 1
}

# Fresh secrets and a subnet of our own: a reconnected container gets its old address back
# (--ip needs a configured subnet), the address memberlist advertised for it.
docker run --rm wkd:latest keygen >"$TMP/key" || exit 1
{
	echo "WKD_GOSSIP_KEY=$(cat "$TMP/key")"
	echo "WKD_NATS_TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
	echo "WKD_DATA_TRAIN=256"
	echo "WKD_TEACHER_STEPS=20"
	echo "WKD_LOG_EVERY=5"
	echo "WKD_CHECKPOINT_EVERY=100"
} >"$TMP/test.env"
used=$(docker network inspect $(docker network ls -q) -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}' 2>/dev/null)
SUBNET=
for _ in $(seq 50); do
	cand="10.$((RANDOM % 200 + 20)).$((RANDOM % 250)).0/24"
	case " $used " in *" $cand "*) continue ;; esac
	SUBNET=$cand
	break
done
cat >"$TMP/override.yml" <<EOF
networks:
  default:
    ipam:
      config:
        - subnet: $SUBNET
EOF

# Helpers over the central log, copied out of the logs container (no shell in the image).
fetch_log() { docker cp "$(dc ps -q logs)":/logs/wkd.log - 2>/dev/null | tar -xO >"$LOG" 2>/dev/null || : >"$LOG"; }
jqlog() { jq -R -r "fromjson? | select(type == \"object\") | $1" "$LOG" 2>/dev/null; }
node_ids() { docker ps -q --no-trunc --filter "label=com.docker.compose.project=$PROJECT" --filter label=com.docker.compose.service=node "$@"; }
# A node's name is its default: container hostname (the short ID), "-", pid 1.
node_name() { echo "$(docker inspect -f '{{.Config.Hostname}}' "$1")-1"; }
# latest_view NAME: "generation world" of the newest view NAME agreed.
latest_view() { jqlog "select(.message == \"view agreed\" and .node == \"$1\" and .world != null) | \"\\(.generation) \\(.world)\"" | tail -n1; }
# last_step NAME: the newest step NAME logged a state digest for.
last_step() { jqlog "select(.state_sha != null and .node == \"$1\") | .step" | tail -n1; }
# wait_until SECONDS DESCRIPTION COMMAND...: poll (re-reading the log) until COMMAND succeeds.
wait_until() {
	local until=$(($(date +%s) + $1)) what=$2
	shift 2
	while :; do
		fetch_log
		"$@" && return 0
		[ "$(date +%s)" -ge "$until" ] && {
			say "timed out waiting for: $what"
			return 1
		}
		sleep 1
	done
}
# views_are WORLD MINGEN NAME...: each NAME's newest view has WORLD members, generation > MINGEN.
views_are() {
	local w=$1 g=$2 n v
	shift 2
	for n in "$@"; do
		v=$(latest_view "$n")
		[ -n "$v" ] && [ "${v#* }" -eq "$w" ] && [ "${v% *}" -gt "$g" ] || return 1
	done
}
# steps_past STEP NAME...: each NAME logged a digest beyond STEP.
steps_past() {
	local s=$1 n l
	shift
	for n in "$@"; do
		l=$(last_step "$n")
		[ -n "$l" ] && [ "$l" -gt "$s" ] || return 1
	done
}
# digests NODE...: "groups mismatched" over the (generation, step) groups logged by two or more
# of these nodes (one run's: another run's generations and steps can coincide), each state_sha
# line tagged with the generation of its node's newest view.
digests() {
	jq -R -s -r --args '$ARGS.positional as $run | [split("\n")[] | fromjson? | select(type == "object")]
	  | reduce .[] as $x ({gen: {}, sha: {}};
	      if $x.message == "view agreed" and $x.world != null then .gen[$x.node] = $x.generation
	      elif $x.state_sha != null and ($run | index([$x.node]) != null) then .sha["\(.gen[$x.node] // 0)/\($x.step)"] += [$x.state_sha]
	      else . end)
	  | [.sha[] | select(length > 1)] | "\(length) \([.[] | select(unique | length > 1)] | length)"' "$@" <"$LOG"
}
# shared_digest NAME MINGEN NODE...: in a view newer than MINGEN, NAME logged a digest equal to
# another of these nodes' for the same (generation, step).
shared_digest() {
	local me=$1 g=${2:-0}
	shift 2
	jq -R -s -e --arg me "$me" --argjson g "$g" --args '$ARGS.positional as $run | [split("\n")[] | fromjson? | select(type == "object")]
	  | reduce .[] as $x ({gen: {}, sha: {}};
	      if $x.message == "view agreed" and $x.world != null then .gen[$x.node] = $x.generation
	      elif $x.state_sha != null and ($run | index([$x.node]) != null) then .sha["\(.gen[$x.node] // 0)/\($x.step)"] += [{n: $x.node, s: $x.state_sha}]
	      else . end)
	  | [.sha | to_entries[] | select((.key | split("/")[0] | tonumber) > $g) | .value
	     | select(any(.n == $me) and any(.n != $me)) | select(map(.s) | unique | length == 1)] | length > 0' "$@" <"$LOG" >/dev/null
}

say "project $PROJECT, subnet $SUBNET, $("${COMPOSE[@]}" version --short 2>/dev/null || echo compose)"

# ---------------------------------------------------------------- (a) a short run to its end
say "(a) up --scale node=3: data, teacher, a 150-step distillation"
export WKD_STEPS=150 WKD_OUT=/runs/short
if ! dc up -d --scale node=3 >"$TMP/up.log" 2>&1; then
	cat "$TMP/up.log"
	check "(a) docker-compose up --scale node=3" 1
	exit 1
fi
mapfile -t A_IDS < <(node_ids -a)
A_NAMES=()
for id in "${A_IDS[@]}"; do A_NAMES+=("$(node_name "$id")"); done
finished() { [ -z "$(node_ids)" ]; }
wait_until 180 "the 3 nodes to exit" finished
codes=$(docker inspect -f '{{.State.ExitCode}}' "${A_IDS[@]}" | sort -u | tr '\n' ' ')
fetch_log
done_n=$(jqlog 'select(.message == "run finished") | .node' | sort -u | wc -l)
check "(a) 3 nodes ran 150 steps to the end" $([ "${#A_IDS[@]}" -eq 3 ] && [ "$codes" = "0 " ] && [ "$done_n" -eq 3 ] && echo 0 || echo 1) \
	"${#A_IDS[@]} containers, exit codes: $codes, 'run finished' from $done_n nodes"
missing=()
for n in "${A_NAMES[@]}"; do
	[ -n "$(jqlog "select(.node == \"$n\") | .node" | head -n1)" ] || missing+=("$n")
done
check "(a) the central log holds lines from every node" ${#missing[@]} \
	"$(wc -l <"$LOG") lines from ${A_NAMES[*]}${missing:+; none from ${missing[*]}}"
files=$(docker cp "${A_IDS[0]}":/runs/short - 2>/dev/null | tar -t 2>/dev/null)
ckpts=$(grep -c 'ckpt/step-.*\.safetensors$' <<<"$files")
gfile=$(grep -c '/G\.safetensors$' <<<"$files")
check "(a) checkpoints and the final generator are in the runs volume" $([ "$ckpts" -ge 1 ] && [ "$gfile" -eq 1 ] && echo 0 || echo 1) \
	"$ckpts checkpoints, G.safetensors: $gfile"
read -r groups bad <<<"$(digests "${A_NAMES[@]}")"
check "(a) replicas identical at every logged step" $([ "${groups:-0}" -ge 10 ] && [ "$bad" -eq 0 ] && echo 0 || echo 1) \
	"${groups:-0} (generation, step) groups compared, $bad differ"

# ---------------------------------------------------------------- (b) elastic: 3 -> 4 -> kill
say "(b) a long run: 3 nodes, then a 4th, then docker kill"
# Many epochs: the run must outlast the checks below (the test stops it).
export WKD_STEPS=1000000 WKD_OUT=/runs/long WKD_NODE_ARGS="--epochs 100000"
dc up -d --no-deps --scale node=3 node >"$TMP/up.log" 2>&1 || cat "$TMP/up.log"
mapfile -t IDS < <(node_ids)
NAMES=()
for id in "${IDS[@]}"; do NAMES+=("$(node_name "$id")"); done
ok=0
wait_until 90 "a view of 3 and 20 steps" eval 'views_are 3 0 "${NAMES[@]}" && steps_past 20 "${NAMES[@]}"' || ok=1
check "(b) a view of 3 trains" $ok "$(latest_view "${NAMES[0]}" | awk '{print "generation " $1}'), step $(last_step "${NAMES[0]}")"
G3=$(latest_view "${NAMES[0]}")
G3=${G3% *}

dc up -d --no-deps --scale node=4 node >"$TMP/up.log" 2>&1 || cat "$TMP/up.log"
NEW=
for id in $(node_ids); do
	case " ${IDS[*]} " in *" $id "*) ;; *) NEW=$id ;; esac
done
ok=1
if [ -n "$NEW" ]; then
	NEWNAME=$(node_name "$NEW")
	IDS+=("$NEW")
	NAMES+=("$NEWNAME")
	s=$(last_step "${NAMES[0]}")
	wait_until 90 "a view of 4 with the new node, and 10 more steps" \
		eval 'views_are 4 "$G3" "${NAMES[@]}" && steps_past $((s + 10)) "${NAMES[@]}"' && ok=0
fi
G4=$(latest_view "${NAMES[0]}")
G4=${G4% *}
check "(b) scale 3 -> 4: a new view of 4 (generation $G3 -> ${G4:-?}) trains" $ok "step $(last_step "${NAMES[0]}")"
ok=1
[ -n "$NEW" ] && shared_digest "$NEWNAME" "$G3" "${NAMES[@]}" && ok=0
check "(b) the joiner received the state: its digests equal the others'" $ok "${NEWNAME:-no new container}"

VICTIM=${IDS[1]}
VNAME=${NAMES[1]}
docker kill "$VICTIM" >/dev/null
t_kill=$(date +%s)
SURV_IDS=()
SURV=()
for i in "${!IDS[@]}"; do
	[ "${IDS[$i]}" = "$VICTIM" ] || {
		SURV_IDS+=("${IDS[$i]}")
		SURV+=("${NAMES[$i]}")
	}
done
s=$(last_step "${SURV[0]}")
ok=0
wait_until 60 "a view of 3 without $VNAME, and 10 more steps" \
	eval 'views_are 3 "$G4" "${SURV[@]}" && steps_past $((s + 10)) "${SURV[@]}"' || ok=1
G5=$(latest_view "${SURV[0]}")
G5=${G5% *}
check "(b) docker kill $VNAME: a new view of 3 (generation ${G4:-?} -> ${G5:-?}) trains on" $ok \
	"seen within $(($(date +%s) - t_kill))s, step $(last_step "${SURV[0]}")"

# ---------------------------------------------------------------- (c) partition and rejoin
CUT_ID=${SURV_IDS[2]}
CUT=${SURV[2]}
REST=("${SURV[0]}" "${SURV[1]}")
CUT_IP=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$CUT_ID")
say "(c) docker network disconnect $CUT ($CUT_IP) for 15 s"
docker network disconnect "$NET" "$CUT_ID"
t_cut=$(date +%s)
s=$(last_step "${REST[0]}")
ok=0
wait_until 30 "a view of 2 without $CUT" eval 'views_are 2 "$G5" "${REST[@]}"' || ok=1
G6=$(latest_view "${REST[0]}")
G6=${G6% *}
s2=$(last_step "${REST[0]}")
sleep $((t_cut + 15 - $(date +%s) > 0 ? t_cut + 15 - $(date +%s) : 0))
fetch_log
s3=$(last_step "${REST[0]}")
[ "${s3:-0}" -gt "${s2:-0}" ] || ok=1
check "(c) the others go on without the cut node: a view of 2 (generation ${G5:-?} -> ${G6:-?})" $ok \
	"steps ${s:-?} -> ${s3:-?} while it was away $(($(date +%s) - t_cut))s"

docker network connect --ip "$CUT_IP" --alias node "$NET" "$CUT_ID"
t_back=$(date +%s)
s=$(last_step "${REST[0]}")
ok=0
wait_until 90 "a view of 3 with $CUT again, and 10 more steps" \
	eval 'views_are 3 "$G6" "$CUT" "${REST[@]}" && steps_past $((s + 10)) "$CUT" "${REST[@]}"' || ok=1
G7=$(latest_view "${REST[0]}")
G7=${G7% *}
check "(c) reconnected, $CUT rejoins: a view of 3 (generation ${G6:-?} -> ${G7:-?})" $ok \
	"after $(($(date +%s) - t_back))s, step $(last_step "$CUT")"

# Every view change is in the log, generations only grow on each node.
fetch_log
nonmono=$(jqlog 'select(.message == "view agreed" and .world != null) | "\(.node) \(.generation)"' |
	awk '{ if (($1 in g) && $2 <= g[$1]) bad++; g[$1] = $2 } END { print bad + 0 }')
seen=$(jqlog 'select(.message == "view agreed" and .world != null and .node == "'"${REST[0]}"'") | "\(.generation):\(.world)"' | tr '\n' ' ')
check "(b,c) each view change is logged, generations grow" $([ "$nonmono" -eq 0 ] && echo 0 || echo 1) "${REST[0]} saw generation:world $seen"
read -r groups bad <<<"$(digests "${NAMES[@]}")"
check "(b,c) replicas identical at every logged step, across all views" $([ "${groups:-0}" -ge 20 ] && [ "$bad" -eq 0 ] && echo 0 || echo 1) \
	"${groups:-0} (generation, step) groups compared, $bad differ"
ok=1
shared_digest "$CUT" "$G6" "${NAMES[@]}" && ok=0
check "(c) the rejoined node holds the same state as the others" $ok

# ---------------------------------------------------------------- (d) whole-cluster restart
say "(d) docker-compose down (volumes kept), then up --scale node=2: the run goes on"
fetch_log
before=0
for n in "$CUT" "${REST[@]}"; do
	x=$(last_step "$n")
	[ "${x:-0}" -gt "$before" ] && before=$x
done
dc down -t 30 >"$TMP/down.log" 2>&1 || cat "$TMP/down.log"
dc up -d --scale node=2 >"$TMP/up.log" 2>&1 || cat "$TMP/up.log"
mapfile -t D_IDS < <(node_ids)
D_NAMES=()
for id in "${D_IDS[@]}"; do D_NAMES+=("$(node_name "$id")"); done
resumed_at() { jqlog "select(.message == \"resumed\" and .node == \"$1\") | .step" | tail -n1; }
ok=0
wait_until 120 "a view of 2 of the new nodes, training" \
	eval 'views_are 2 0 "${D_NAMES[@]}" && steps_past $((before + 5)) "${D_NAMES[@]}"' || ok=1
r=
for n in "${D_NAMES[@]}"; do r="$r $(resumed_at "$n")"; done
# Every new node sees the same run folder and resumes from the step rank 0 saved on the way
# down: at least the last step the old nodes logged, not an older periodic checkpoint.
for x in $r; do [ "$x" -ge "$before" ] || ok=1; done
[ -n "${r// /}" ] || ok=1
check "(d) new nodes ${D_NAMES[*]} resume where the stopped ones were (logged step $before)" $ok "resumed at:${r:- none}, now at step $(last_step "${D_NAMES[0]}")"

say "done in $(($(date +%s) - T0))s"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
