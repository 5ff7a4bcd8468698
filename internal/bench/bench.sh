#!/usr/bin/env bash
# Download benchmark behind `make bench` (run `make build` first; `make bench`
# does). It serves a generated multi-GiB split GGUF from the loopback test hub
# and downloads it with
#
#   hal0      `hal0 model pull --local` (SHA-256 verified, fsynced, registered),
#             with the default settings and with HAL0_PULL_CONNECTIONS=16
#   curl      the shards one after the other, one connection each
#   aria2c    -x16 -s16 -j3, unverified
#
# then measures hashing cost (cat vs sha256sum on a warm cache, Go's
# crypto/sha256 throughput) and resume after `kill -9` at >= 50%.
#
# Every download writes to the same disk (.bench/), its wall time includes a
# final `sync`, and its output is deleted afterwards. The data set is kept in
# .bench/data and reused. Results: .bench/results.txt; logs: .bench/logs/.
#
# Each download runs BENCH_RUNS times, the tools interleaved round by round;
# the table reports the fastest run of each (the least disturbed by other load
# on the machine) and lists all of them.
#
# Knobs (environment): BENCH_SHARDS (3), BENCH_SHARD_SIZE (1400MiB),
# BENCH_RUNS (3).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=$ROOT/bin
B=$ROOT/.bench
LOGS=$B/logs
RESULTS=$B/results.txt
REPO=bench/big-GGUF
QUANT=Q4_K_M
SHARDS=${BENCH_SHARDS:-3}
SHARD_SIZE=${BENCH_SHARD_SIZE:-1400MiB}
RUNS=${BENCH_RUNS:-3}
# The default data set lives in .bench/data; other sizes get their own folder
# so that trying one does not overwrite the cached multi-GiB files.
DATA=$B/data
[[ $SHARDS == 3 && $SHARD_SIZE == 1400MiB ]] || DATA=$B/data-${SHARDS}x$SHARD_SIZE
# hal0's defaults (internal/config: pull.connections, pull.chunk_size). The
# connection count is also the engine's global cap on ranges in flight.
DEFAULT_CONNS=8
CHUNK=$((64 << 20))

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; } # calc FORMAT EXPR

for b in hal0 hal0-testhub; do
	[[ -x $BIN/$b ]] || die "$BIN/$b missing: run make build (or make bench)"
done

# --- 1. tools -----------------------------------------------------------------
need=()
command -v aria2c >/dev/null || need+=(aria2)
command -v curl >/dev/null || need+=(curl)
[[ -x /usr/bin/time ]] || need+=(time)
if ((${#need[@]})); then
	SUDO=()
	[[ $EUID -eq 0 ]] || SUDO=(sudo)
	log "installing ${need[*]}"
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# A clean client environment: nothing tuned, no token (the test hub rejects
# every token), no proxy for loopback.
for v in $(compgen -e); do
	case $v in HAL0_* | HF_* | HUGGING_FACE_HUB_TOKEN) unset "$v" ;; esac
done
export HF_TOKEN_PATH=/dev/null NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

mkdir -p "$DATA" "$LOGS"
rm -rf "$B"/out-* "$B"/home-* "$LOGS"/*

HUB_PID=
BG_PID=
SNAP_PID=
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n $SNAP_PID ]]; then
		kill "$SNAP_PID" 2>/dev/null || true
		wait "$SNAP_PID" 2>/dev/null || true
	fi
	if [[ -n $BG_PID ]]; then
		kill -9 "$BG_PID" 2>/dev/null || true
		wait "$BG_PID" 2>/dev/null || true
	fi
	if [[ -n $HUB_PID ]]; then
		kill "$HUB_PID" 2>/dev/null || true
		wait "$HUB_PID" 2>/dev/null || true
	fi
	rm -rf "$B"/out-* "$B"/home-*
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 2. data set and hub ----------------------------------------------------------
log "starting the test hub ($SHARDS x $SHARD_SIZE under $DATA; generated on first use)"
t0=$(now)
"$BIN/hal0-testhub" -v --listen 127.0.0.1:0 --repo "$REPO" --quant "$QUANT" \
	--shards "$SHARDS" --shard-size "$SHARD_SIZE" --dir "$DATA" \
	>"$LOGS/hub.out" 2>"$LOGS/hub.log" &
HUB_PID=$!
HUB_URL=
for ((i = 0; i < 1800; i++)); do # 15 min: generating ~4 GiB takes well under that
	HUB_URL=$(sed -n 's/^HUB_URL=//p' "$LOGS/hub.out")
	[[ -n $HUB_URL ]] && break
	kill -0 "$HUB_PID" 2>/dev/null || die "test hub exited: $(tail -5 "$LOGS/hub.log")"
	sleep 0.5
done
[[ -n $HUB_URL ]] || die "test hub printed no HUB_URL in 15 minutes"
HUB_START_S=$(calc %.1f "$(now) - $t0")
log "hub at $HUB_URL (ready after ${HUB_START_S}s)"

curl -sSf "$HUB_URL/api/models/$REPO/tree/main?recursive=true" >"$LOGS/tree.json"
mapfile -t LISTING < <(python3 -c '
import json, sys
q = sys.argv[2] + "/"
for e in json.load(open(sys.argv[1])):
    if e.get("type") == "file" and e["path"].startswith(q) and e["path"].endswith(".gguf"):
        print(e["size"], e["path"])
' "$LOGS/tree.json" "$QUANT")
((${#LISTING[@]} == SHARDS)) || die "tree lists ${#LISTING[@]} $QUANT shards, want $SHARDS (see $LOGS/tree.json)"
PATHS=()
SIZES=()
TOTAL=0
for l in "${LISTING[@]}"; do
	SIZES+=("${l%% *}")
	PATHS+=("${l#* }")
	TOTAL=$((TOTAL + ${l%% *}))
done
# The hal0 pull also fetches README.md etc. if the selection wants them; the
# shards are what matters. MB/s below is shard bytes / wall.
log "shards: ${PATHS[*]} ($(calc %.2f "$TOTAL / 1073741824") GiB)"

# --- measurement helpers -------------------------------------------------------------
CLK=$(getconf CLK_TCK)
hub_ticks() { awk '{ print $14 + $15 }' "/proc/$HUB_PID/stat"; }
# machine CPU: busy (user nice system irq softirq) and steal ticks
cpu_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $9 }' /proc/stat; }
served_since() { # sum of body bytes the hub logged after line $1
	awk -v from="$1" 'NR > from && match($0, /-> [0-9]+, [0-9]+ bytes/) {
		split(substr($0, RSTART, RLENGTH), f, /[ ,]+/); s += f[3] } END { printf "%.0f", s }' "$LOGS/hub.log"
}
hub_quiet() { # wait (<= 10 s) until the hub log stops growing for 1 s
	local n m i
	n=$(wc -l <"$LOGS/hub.log")
	for ((i = 0; i < 10; i++)); do
		sleep 1
		m=$(wc -l <"$LOGS/hub.log")
		[[ $m == "$n" ]] && return
		n=$m
	done
}
timefield() { sed -n "s/^[[:space:]]*$2: //p" "$1"; } # /usr/bin/time -v field

declare -A WALL RC RSS UCPU SCPU HUBCPU BUSY STEAL LOAD SERVED
# timed NAME CMD...: runs CMD under /usr/bin/time -v, then sync; the wall
# time covers both.
timed() {
	local name=$1 t0 t1 h0 h1 c0 c1 rc=0
	shift
	sync
	LOAD[$name]=$(cut -d' ' -f1 /proc/loadavg)
	local mark
	mark=$(wc -l <"$LOGS/hub.log")
	h0=$(hub_ticks)
	read -r -a c0 < <(cpu_ticks)
	# What the CPUs do 5 s into the run: top's second sample (the first
	# covers the time since boot). Runs shorter than that get none.
	top -b -d 5 -n 2 -w 200 >"$LOGS/$name.top.tmp" &
	SNAP_PID=$!
	t0=$(now)
	/usr/bin/time -v -o "$LOGS/$name.time" "$@" >"$LOGS/$name.out" 2>"$LOGS/$name.err" || rc=$?
	sync
	t1=$(now)
	read -r -a c1 < <(cpu_ticks)
	h1=$(hub_ticks)
	kill "$SNAP_PID" 2>/dev/null || true
	wait "$SNAP_PID" 2>/dev/null || true
	SNAP_PID=
	awk '/^top - / { n++ } n == 2' "$LOGS/$name.top.tmp" | head -n 30 >"$LOGS/$name.top"
	rm -f "$LOGS/$name.top.tmp"
	WALL[$name]=$(calc %.2f "$t1 - $t0")
	RC[$name]=$rc
	RSS[$name]=$(calc %.0f "$(timefield "$LOGS/$name.time" 'Maximum resident set size (kbytes)') / 1024")
	UCPU[$name]=$(timefield "$LOGS/$name.time" 'User time (seconds)')
	SCPU[$name]=$(timefield "$LOGS/$name.time" 'System time (seconds)')
	HUBCPU[$name]=$(calc %.2f "($h1 - $h0) / $CLK")
	BUSY[$name]=$(calc %.2f "(${c1[0]} - ${c0[0]}) / $CLK")
	STEAL[$name]=$(calc %.2f "(${c1[1]} - ${c0[1]}) / $CLK")
	hub_quiet
	SERVED[$name]=$(served_since "$mark")
	log "$name: ${WALL[$name]}s, exit $rc, client CPU ${UCPU[$name]}u+${SCPU[$name]}s, hub CPU ${HUBCPU[$name]}s, machine busy ${BUSY[$name]} CPU-s, served ${SERVED[$name]} B"
	if ((rc != 0)); then
		log "$name failed (exit $rc); last lines of $LOGS/$name.err:"
		tail -n 15 "$LOGS/$name.err" >&2 || true
	fi
}
check_sizes() { # check_sizes NAME DIR: every shard is there with its listed size
	local i f n bad=0
	for i in "${!PATHS[@]}"; do
		f=$(find "$2" -name "${PATHS[$i]##*/}" -type f | head -1)
		n=$(stat -c %s "$f" 2>/dev/null || echo missing)
		[[ $n == "${SIZES[$i]}" ]] || { log "$1: ${PATHS[$i]##*/} is $n bytes, want ${SIZES[$i]}"; bad=1; }
	done
	((bad == 0)) || RC[$1]="${RC[$1]}+size"
}
hal0_env() { # hal0_env HOME [VAR=VALUE...]: the environment of a hal0 pull
	local home=$1
	shift
	echo env "HAL0_HOME=$home" "HF_ENDPOINT=$HUB_URL" HAL0_DISK_RESERVE=0 "$@"
}

# --- 3. downloads ------------------------------------------------------------------
run_hal0() { # run_hal0 NAME [VAR=VALUE...]
	local name=$1 home=$B/home-hal0
	shift
	rm -rf "$home"
	log "$name: hal0 model pull $REPO:$QUANT --local $*"
	# shellcheck disable=SC2046
	timed "$name" $(hal0_env "$home" "$@") "$BIN/hal0" model pull "$REPO:$QUANT" --local
	check_sizes "$name" "$home/mnt"
	HAL0_HOME=$home "$BIN/hal0" model show "$REPO:$QUANT" >"$LOGS/$name.show" 2>&1 ||
		{ log "$name: not registered: $(cat "$LOGS/$name.show")"; RC[$name]="${RC[$name]}+unregistered"; }
	rm -rf "$home"
}
run_curl() {
	local name=$1
	log "$name: ${#PATHS[@]} shards one after the other"
	rm -rf "$B/out-curl" && mkdir -p "$B/out-curl"
	timed "$name" bash -c 'set -e; out=$1 base=$2; shift 2
		for p; do curl -sSfL -o "$out/${p##*/}" "$base/$p"; done' _ \
		"$B/out-curl" "$HUB_URL/$REPO/resolve/main" "${PATHS[@]}"
	check_sizes "$name" "$B/out-curl"
	rm -rf "$B/out-curl"
}
for p in "${PATHS[@]}"; do printf '%s\n  out=%s\n' "$HUB_URL/$REPO/resolve/main/$p" "${p##*/}"; done >"$LOGS/urls.txt"
run_aria2c() {
	local name=$1
	log "$name: -x16 -s16 -j3"
	rm -rf "$B/out-aria2c" && mkdir -p "$B/out-aria2c"
	timed "$name" aria2c -x16 -s16 -j3 --file-allocation=none --allow-overwrite=true \
		--summary-interval=0 --console-log-level=warn -d "$B/out-aria2c" -i "$LOGS/urls.txt"
	check_sizes "$name" "$B/out-aria2c"
	rm -rf "$B/out-aria2c"
}
TOOLS=(hal0 hal0-c16 curl aria2c)
for ((r = 1; r <= RUNS; r++)); do
	run_hal0 "hal0.$r"
	run_hal0 "hal0-c16.$r" HAL0_PULL_CONNECTIONS=16
	run_curl "curl.$r"
	run_aria2c "aria2c.$r"
done
# BEST[tool] is the key (tool.N) of its fastest run, ALL[tool] its wall times.
declare -A BEST ALL
for t in "${TOOLS[@]}"; do
	for ((r = 1; r <= RUNS; r++)); do
		k=$t.$r
		ALL[$t]="${ALL[$t]:+${ALL[$t]} }${WALL[$k]}"
		if [[ -z ${BEST[$t]:-} ]] || awk "BEGIN { exit !(${WALL[$k]} < ${WALL[${BEST[$t]}]}) }"; then
			BEST[$t]=$k
		fi
	done
done

# --- 4. hashing cost ------------------------------------------------------------------
DATA_FILES=()
for p in "${PATHS[@]}"; do DATA_FILES+=("$DATA/$REPO/$p"); done
cat "${DATA_FILES[@]}" >/dev/null # warm (the hub has just served them; this makes sure)
t0=$(now)
cat "${DATA_FILES[@]}" >/dev/null
CAT_S=$(calc %.2f "$(now) - $t0")
t0=$(now)
sha256sum "${DATA_FILES[@]}" >"$LOGS/sha256sum.out"
SHASUM_S=$(calc %.2f "$(now) - $t0")
GIB=$(calc %.4f "$TOTAL / 1073741824")
HASH_S_PER_GIB=$(calc %.2f "($SHASUM_S - $CAT_S) / $GIB")
GO_MBS=
if command -v go >/dev/null; then
	log "Go crypto/sha256 benchmark"
	(cd "$ROOT" && go test -run '^$' -bench '^BenchmarkSHA256$' -benchtime 2s -count 3 ./internal/bench/) >"$LOGS/gobench.out" 2>&1 || true
	# the best of three: the least disturbed by other load on the machine
	GO_MBS=$(awk '/^BenchmarkSHA256/ { for (i = 1; i < NF; i++) if ($(i + 1) == "MB/s" && $i > m) m = $i } END { if (m) print m }' "$LOGS/gobench.out")
fi

# --- 5. resume after kill -9 ---------------------------------------------------------
RHOME=$B/home-resume
rm -rf "$RHOME"
log "resume: pull, kill -9 at >= 50%, pull again"
job_field() { # job_field FIELD...: fields of the (single) job record, 0 if unreadable
	python3 - "$RHOME/var/lib/hal0/jobs" "$@" <<'EOF' 2>/dev/null || echo 0
import glob, json, os, sys
fs = sorted(glob.glob(os.path.join(sys.argv[1], "*.json")), key=os.path.getmtime)
j = json.load(open(fs[-1])) if fs else {}
print(" ".join(str(j.get(k, 0)) for k in sys.argv[2:]))
EOF
}
RESUME_MARK=$(wc -l <"$LOGS/hub.log")
# shellcheck disable=SC2046
$(hal0_env "$RHOME") "$BIN/hal0" model pull "$REPO:$QUANT" --local >"$LOGS/resume1.out" 2>"$LOGS/resume1.err" &
BG_PID=$!
KILLED=0
KILL_DONE=0
KILL_TOTAL=0
for ((i = 0; i < 1500; i++)); do # 5 minutes at 0.2 s
	kill -0 "$BG_PID" 2>/dev/null || break
	read -r d t < <(job_field bytes_done bytes_total) || true
	if [[ ${t:-0} -gt 0 && $((2 * d)) -ge $t ]]; then
		kill -9 "$BG_PID" 2>/dev/null || true
		KILLED=1 KILL_DONE=$d KILL_TOTAL=$t
		break
	fi
	sleep 0.2
done
RESUME1_RC=0
wait "$BG_PID" 2>/dev/null || RESUME1_RC=$?
BG_PID=
hub_quiet
SERVED1=$(served_since "$RESUME_MARK")
if ((KILLED)); then
	log "resume: killed at bytes_done=$KILL_DONE of $KILL_TOTAL (job record), hub served $SERVED1 B"
else
	log "resume: the first pull ended (exit $RESUME1_RC) before the job record reached 50%; see $LOGS/resume1.err"
fi
# shellcheck disable=SC2046
timed resume2 $(hal0_env "$RHOME") "$BIN/hal0" model pull "$REPO:$QUANT" --local
check_sizes resume2 "$RHOME/mnt"
read -r R_RESUMED R_TOTAL R_STATE < <(job_field resumed_bytes bytes_total state)
SERVED2=${SERVED[resume2]}
rm -rf "$RHOME"

# --- 6. summary ------------------------------------------------------------------------
mb() { calc %.0f "$1 / 1e6"; }
mib() { calc %.0f "$1 / 1048576"; }
BEST[resume2]=resume2
ALL[resume2]=${WALL[resume2]}
A=${WALL[${BEST[aria2c]}]}
H=${WALL[${BEST[hal0]}]}
H16=${WALL[${BEST[hal0-c16]}]}
{
	echo "hal0 download benchmark, $(date -u +%FT%TZ), $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(git -C "$ROOT" describe --tags --always --dirty 2>/dev/null || echo unknown)"
	echo "data: $SHARDS shards, $TOTAL bytes ($(calc %.2f "$GIB") GiB, $(mb "$TOTAL") MB), served from page cache by hal0-testhub (sendfile) on loopback; writes to $(df --output=source "$B" | tail -1)"
	echo "hal0 defaults: pull.connections=$DEFAULT_CONNS, pull.chunk_size=$(mib $CHUNK)MiB, pull.concurrency=4"
	echo
	echo "best of $RUNS runs per tool (resume: 1 run):"
	printf '%-22s %8s %8s %10s %9s %12s %10s %6s  %s\n' tool wall_s MB/s wall/aria2c peak_MiB client_cpu_s hub_cpu_s load1 "all runs (wall s) / resume bytes"
	for t in "${TOOLS[@]}" resume2; do
		n=${BEST[$t]}
		case $t in
		hal0) label="hal0 (default, 8 conn)" ;;
		hal0-c16) label="hal0 (16 conn)" ;;
		curl) label="curl sequential" ;;
		aria2c) label="aria2c -x16 -s16 -j3" ;;
		resume2) label="hal0 resume, 2nd run" ;;
		esac
		bytes=$TOTAL
		[[ $t == resume2 ]] && bytes=$SERVED2
		rss=0
		for ((r = 1; r <= RUNS; r++)); do [[ -n ${RSS[$t.$r]:-} ]] && ((RSS[$t.$r] > rss)) && rss=${RSS[$t.$r]}; done
		[[ $t == resume2 ]] && rss=${RSS[resume2]}
		[[ $t == curl || $t == aria2c ]] && rss="($rss)"
		extra=${ALL[$t]}
		[[ $t == resume2 ]] && extra="fetched $SERVED2 B = $(calc %.1f "100 * $SERVED2 / $TOTAL")% of total"
		printf '%-22s %8s %8s %10s %9s %12s %10s %6s  %s\n' "$label" "${WALL[$n]}" \
			"$(calc %.0f "$bytes / 1e6 / ${WALL[$n]}")" "$(calc %.2f "${WALL[$n]} / $A")" "$rss" \
			"$(calc %.2f "${UCPU[$n]} + ${SCPU[$n]}")" "${HUBCPU[$n]}" "${LOAD[$n]}" "$extra"
	done
	echo "(MB/s = shard bytes / wall incl. final sync (resume: bytes fetched / wall); peak_MiB = max RSS over all runs from /usr/bin/time -v, in () for"
	echo " curl/aria2c, where it is the largest single process; client_cpu_s = user+sys of the client; hub_cpu_s = test hub CPU;"
	echo " load1 = 1-min load average when the run started: anything well above 0 means other processes shared the CPUs)"
	echo
	echo "every run: wall s, exit, client CPU user+sys, machine busy CPU-s (of $(nproc) x wall), of which other processes, steal:"
	for k in $(printf '%s\n' "${!WALL[@]}" | sort -V); do
		printf '  %-12s %7s s  exit %-3s client %5s+%-5s busy %6s of %6s  other ~%6s  steal %s\n' "$k" "${WALL[$k]}" "${RC[$k]}" "${UCPU[$k]}" "${SCPU[$k]}" \
			"${BUSY[$k]}" "$(calc %.1f "$(nproc) * ${WALL[$k]}")" "$(calc %.2f "${BUSY[$k]} - ${UCPU[$k]} - ${SCPU[$k]} - ${HUBCPU[$k]}")" "${STEAL[$k]}"
	done
	echo
	echo "hashing:"
	echo "  warm cache, $(calc %.2f "$GIB") GiB: cat ${CAT_S}s, sha256sum ${SHASUM_S}s -> sha256sum costs ${HASH_S_PER_GIB} s/GiB over reading"
	if [[ -n $GO_MBS ]]; then
		HASH_CPU_S=$(calc %.2f "$TOTAL / 1e6 / $GO_MBS")
		echo "  Go crypto/sha256 (internal/bench BenchmarkSHA256, best of 3): $GO_MBS MB/s -> $HASH_CPU_S CPU-s for the shards"
		echo "  = $(calc %.1f "100 * $HASH_CPU_S / $H")% of hal0's best default wall time (hashing overlaps the download; on 2 CPUs it competes with it)"
	fi
	echo "  upper bound on verification+fsync+registry overhead, (hal0 - aria2c)/hal0, best runs: default $(calc %.1f "100 * ($H - $A) / $H")%, 16 conn $(calc %.1f "100 * ($H16 - $A) / $H16")%  (target < 5%; negative: hal0 was faster)"
	echo
	echo "resume after kill -9 (bytes counted by the hub's per-request log, testhub -v: body bytes each response sent):"
	if ((KILLED)); then
		echo "  1st run killed when the job record said bytes_done=$KILL_DONE of $KILL_TOTAL ($(calc %.1f "100 * $KILL_DONE / $KILL_TOTAL")%); hub had served $SERVED1 B ($(calc %.1f "100 * $SERVED1 / $TOTAL")%)"
		((KILL_DONE < KILL_TOTAL)) || echo "  (too late to test resume: the download had already finished; use a larger data set)"
	else
		echo "  1st run was NOT killed: it ended with exit $RESUME1_RC before the job record reached 50% (hub served $SERVED1 B)"
	fi
	echo "  2nd run: exit ${RC[resume2]}, job state $R_STATE, resumed_bytes=$R_RESUMED of $R_TOTAL; hub served $SERVED2 B; job-record estimate total-resumed = $((R_TOTAL - R_RESUMED)) B"
	LIMIT=$((TOTAL / 2 + DEFAULT_CONNS * CHUNK))
	echo "  target: 2nd run <= 50% + $DEFAULT_CONNS x $(mib $CHUNK) MiB in flight = $LIMIT B: $( ((SERVED2 <= LIMIT)) && echo PASS || echo FAIL)"
	echo "  fetched twice (run1 + run2 - total): $((SERVED1 + SERVED2 - TOTAL)) B = $(calc %.1f "($SERVED1 + $SERVED2 - $TOTAL) / 1048576") MiB (one range per connection would be <= $(mib $((DEFAULT_CONNS * CHUNK))) MiB)"
	echo
	echo "hub ready after ${HUB_START_S}s (includes generating the data set on the first run); logs in $LOGS"
} | tee "$RESULTS"

status=0
for k in "${!RC[@]}"; do [[ ${RC[$k]} == 0 ]] || status=1; done
exit $status
