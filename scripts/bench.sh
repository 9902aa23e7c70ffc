#!/usr/bin/env bash
# The benchmark of issue 5 (`make bench`): regdns against a bare miekg/dns
# server (bench/ceiling), Knot DNS, CoreDNS with the file plugin and CoreDNS
# with file + cache, serving the same records, in the same run, on loopback. It
#   - installs dnsperf, knot, gnuplot and redis-server with apt-get when missing;
#   - builds regdns and the tools of bench/ (ceiling, seed, loadgen, e2a);
#   - builds CoreDNS (BENCH_COREDNS_VERSION, default v1.14.7) once with
#     `go install github.com/coredns/coredns@VERSION`, run from a temporary
#     directory outside any module (the repository's go.mod/go.sum are not
#     touched; about 2 minutes, ~110 MB), into
#     ${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/regdns-bench}/coredns-VERSION/coredns,
#     and reuses that binary afterwards; BENCH_COREDNS=0 leaves CoreDNS out,
#     and so does a failed build (logged, the run goes on);
#   - starts redis-server on a free loopback port and writes a registry of
#     100 services x 3 healthy instances in the reference layout (bench/seed),
#     which also writes the same records as a zone file and a query file of
#     SRV and A queries of the 100 services;
#   - starts regdns (default settings, JSON logs), bench/ceiling, knotd and
#     two CoreDNS servers on the zone file (coredns: `file`; coredns-cache:
#     `file` and `cache` with its defaults; no log/errors plugins, -quiet);
#   - throughput: BENCH_ROUNDS rounds (default 3) of BENCH_SECONDS (default
#     15) unthrottled dnsperf runs (-c 8 -T 2 -q 500 -t 2) per server, servers
#     alternating; median qps, latency, lost queries, server CPU seconds
#     (/proc/<pid>/stat utime+stime) and queries per server CPU-second;
#   - latency: each server at half of regdns's median qps, with bench/loadgen
#     (open-loop, p50/p99 per query) and dnsperf -Q (average, max); and each
#     at BENCH_FIXED_QPS (default 20,000, the rate of the issue's table) with
#     bench/loadgen; and each at the half rate again with the server pinned
#     to CPU 0 and bench/loadgen to CPU 1 (taskset), so that no query waits
#     for a core the load generator holds;
#   - Redis commands issued while regdns was being queried (INFO commandstats);
#   - RSS of regdns; event-to-answer latency over BENCH_E2A_CHANGES (1,000)
#     registry changes (bench/e2a);
#   - scale: 10,000 services x 10 instances (BENCH_SCALE_SERVICES,
#     BENCH_SCALE_INSTANCES): full sync time, RSS, a dnsperf run and e2a.
# Results: bench/out/results.json, summary.md, runs.tsv, latency.tsv,
# bench.png; logs and raw outputs in bench/out/work/ (BENCH_OUT=DIR writes
# them elsewhere). Every process started
# here is killed on exit. Loopback only; every loop is bounded.
#
# Time: each compared server takes ROUNDS*SECS + 2*SECS (75 s by default);
# the default run takes about 9 minutes, plus ~2 minutes the first time
# CoreDNS is built.
#
# A CI-size run: BENCH_ROUNDS=1 BENCH_SECONDS=3 BENCH_SCALE_SERVICES=1000 BENCH_E2A_CHANGES=100 scripts/bench.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECONDS:-15}
SCALE_SERVICES=${BENCH_SCALE_SERVICES:-10000}
SCALE_INSTANCES=${BENCH_SCALE_INSTANCES:-10}
E2A_CHANGES=${BENCH_E2A_CHANGES:-1000}
FIXED_QPS=${BENCH_FIXED_QPS:-20000}
SERVICES=100
INSTANCES=3
DNSPERF_ARGS=(-c 8 -T 2 -q 500 -t 2)

OUT=${BENCH_OUT:-$ROOT/bench/out}
WORK=$OUT/work
BIN=$OUT/bin

log() { printf '%s bench: %s\n' "$(date +%T)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# --- dependencies, as scripts/install-test-deps.sh installs its own --------
missing=()
command -v dnsperf >/dev/null 2>&1 || missing+=(dnsperf)
command -v knotd >/dev/null 2>&1 || [ -x /usr/sbin/knotd ] || missing+=(knot)
command -v gnuplot >/dev/null 2>&1 || missing+=(gnuplot-nox)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v ss >/dev/null 2>&1 || [ -x /usr/sbin/ss ] || [ -x /bin/ss ] || missing+=(iproute2)
if [ "${#missing[@]}" -gt 0 ]; then
	command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]}, and no apt-get to install them"
	sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 || die "missing ${missing[*]}; not root and no sudo"
		sudo=(sudo)
	fi
	log "installing ${missing[*]}"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
KNOTD=$(command -v knotd || echo /usr/sbin/knotd)

# --- processes: every one started here is killed on exit -------------------
PIDS=()
stop_pid() { # stop_pid PID: TERM, then KILL after 5 s
	local pid=$1 i
	kill "$pid" 2>/dev/null || return 0
	for i in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		stop_pid "$pid"
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

USED_PORTS=" "
free_port() { # a port free for TCP and UDP on 127.0.0.1, below the ephemeral range
	local p i
	for i in $(seq 1 200); do
		p=$((20000 + RANDOM % 12000))
		case $USED_PORTS in *" $p "*) continue ;; esac
		if [ -z "$(ss -Hlntu "sport = :$p" 2>/dev/null)" ]; then
			USED_PORTS="$USED_PORTS$p "
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

sock_drops() { # drops counted on the UDP sockets bound to 127.0.0.1:PORT (receive buffer full)
	ss -Huamn "sport = :$1" 2>/dev/null | grep -o 'd[0-9]*)' | tr -d 'd)' | awk '{t += $1} END {print t + 0}'
}
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; } # utime+stime, all threads
CLK_TCK=$(getconf CLK_TCK)
rss_mb() { awk -v k="$2" '$1 == k":" {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
median() { sort -g | awk '{a[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
jnum() { sed -n "s/.*\"$2\":\([-0-9.e+]*\).*/\1/p" <<<"$1" | head -1; } # jnum JSON FIELD: a number of a flat JSON line

# probe SERVER NAME [TYPE]: succeeds when SERVER answers NAME with data.
probe() { "$BIN/loadgen" -server "$1" -probe "$2" -type "${3:-SRV}" -timeout 200ms >/dev/null 2>&1; }
wait_probe() { # wait_probe SERVER NAME SECONDS
	local i
	for i in $(seq 1 $(($3 * 10))); do
		probe "$1" "$2" && return 0
		sleep 0.1
	done
	return 1
}

# --- build -----------------------------------------------------------------
rm -rf "$WORK" "$BIN"
rm -f "$OUT/results.json" "$OUT/summary.md" "$OUT/runs.tsv" "$OUT/latency.tsv" "$OUT/bench.png"
mkdir -p "$WORK" "$BIN"
log "building regdns and bench/{ceiling,seed,loadgen,e2a}"
go build -o "$BIN/regdns" .
go build -o "$BIN/" ./bench/ceiling ./bench/seed ./bench/loadgen ./bench/e2a

# CoreDNS, built once into a cache outside the repository: `go install
# pkg@version` from a temporary directory ignores any go.mod, so the
# repository's go.mod/go.sum are not touched. A failed build leaves CoreDNS
# out of the run, as knotd's failure leaves Knot out.
COREDNS_VERSION=${BENCH_COREDNS_VERSION:-v1.14.7}
COREDNS_CACHE=${BENCH_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/regdns-bench}
COREDNS=$COREDNS_CACHE/coredns-$COREDNS_VERSION/coredns
COREDNS_VER=
build_coredns() { # builds $COREDNS; non-zero on failure (called in a condition: no set -e here)
	local dir tmp t0 to=()
	dir=$(dirname "$COREDNS")
	mkdir -p "$dir" || return 1
	tmp=$(mktemp -d "$dir/build.XXXXXX") || return 1
	command -v timeout >/dev/null 2>&1 && to=(timeout 1800)
	log "building CoreDNS $COREDNS_VERSION: go install github.com/coredns/coredns@$COREDNS_VERSION into $dir (about 2 minutes; $WORK/coredns-build.log)"
	t0=$(date +%s)
	if ! (cd "$tmp" && env -u GOFLAGS GOWORK=off GO111MODULE=on GOBIN="$tmp/bin" \
		"${to[@]}" go install "github.com/coredns/coredns@$COREDNS_VERSION") >"$WORK/coredns-build.log" 2>&1; then
		log "CoreDNS build failed: $(tail -3 "$WORK/coredns-build.log" | tr '\n' ' ')"
		rm -rf "$tmp"
		rmdir "$dir" 2>/dev/null
		return 1
	fi
	if ! mv -f "$tmp/bin/coredns" "$COREDNS"; then
		rm -rf "$tmp"
		return 1
	fi
	rm -rf "$tmp"
	log "CoreDNS built in $(($(date +%s) - t0)) s: $COREDNS"
}
if [ "${BENCH_COREDNS:-1}" = 0 ]; then
	COREDNS_STATUS="CoreDNS left out (BENCH_COREDNS=0)"
elif { [ -x "$COREDNS" ] && COREDNS_HOW="cached binary"; } || { build_coredns && COREDNS_HOW="built in this run"; }; then
	COREDNS_VER=$("$COREDNS" -version 2>/dev/null | sed -n 's/^CoreDNS-//p' | head -1) || true
	if [ -n "$COREDNS_VER" ]; then
		COREDNS_STATUS="CoreDNS $COREDNS_VER (go install github.com/coredns/coredns@$COREDNS_VERSION, $COREDNS_HOW)"
	else
		COREDNS_STATUS="CoreDNS binary $COREDNS does not run: CoreDNS left out"
	fi
else
	COREDNS_STATUS="CoreDNS $COREDNS_VERSION could not be built (see $WORK/coredns-build.log): CoreDNS left out"
fi
log "$COREDNS_STATUS"

# --- the machine -----------------------------------------------------------
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
NPROC=$(nproc)
KERNEL=$(uname -r)
GOVER=$(go env GOVERSION)
REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git status --porcelain 2>/dev/null | grep -c . || true)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
DNSPERF_VER=$(dnsperf -h 2>&1 | awk '/^Version/ {print $2}')
KNOT_VER=$("$KNOTD" --version 2>/dev/null | awk '{print $NF}')
REDIS_VER=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')
log "machine: $NPROC x $CPU_MODEL, kernel $KERNEL, load $LOAD_START"

# --- redis and the registry ------------------------------------------------
RP=$(free_port)
REDIS_URL=redis://127.0.0.1:$RP/0
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no --protected-mode no \
	--dir "$WORK" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
for i in $(seq 1 100); do
	[ "$(redis-cli -p "$RP" ping 2>/dev/null)" = PONG ] && break
	[ "$i" -eq 100 ] && die "redis-server did not start (see $WORK/redis.log)"
	sleep 0.1
done
rcli() { redis-cli -p "$RP" "$@"; }
log "redis-server on 127.0.0.1:$RP; seeding $SERVICES x $INSTANCES"
"$BIN/seed" -redis "$REDIS_URL" -services $SERVICES -instances $INSTANCES \
	-zonefile "$WORK/service.local.zone" -queries "$WORK/queries.txt" 2>>"$WORK/seed.log"

# --- servers ---------------------------------------------------------------
declare -A PORT PID
start_regdns() { # start_regdns LOG: starts regdns, waits for its first full sync
	PORT[regdns]=$(free_port)
	local t0 i
	t0=$(date +%s%N)
	REGDNS_LOG_FORMAT=json "$BIN/regdns" serve -listen "127.0.0.1:${PORT[regdns]}" -redis "$REDIS_URL" 2>"$1" &
	PID[regdns]=$!
	PIDS+=("${PID[regdns]}")
	for i in $(seq 1 1200); do
		grep -q '"registry in sync"' "$1" && break
		kill -0 "${PID[regdns]}" 2>/dev/null || die "regdns exited (see $1)"
		[ "$i" -eq 1200 ] && die "regdns not in sync after 120 s (see $1)"
		sleep 0.1
	done
	START_TO_SYNC_S=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN {printf "%.2f", (b - a) / 1e9}')
	SYNC_MS=$(grep '"registry in sync"' "$1" | head -1 | sed -n 's/.*"took":\([0-9.]*\).*/\1/p')
	wait_probe "127.0.0.1:${PORT[regdns]}" svc-0.service.local 10 || die "regdns does not answer svc-0 (see $1)"
}
start_regdns "$WORK/regdns.log"
SMALL_SYNC_MS=$SYNC_MS
log "regdns on 127.0.0.1:${PORT[regdns]}: full sync of $((SERVICES * INSTANCES)) instances took ${SYNC_MS} ms"

PORT[ceiling]=$(free_port)
"$BIN/ceiling" -listen "127.0.0.1:${PORT[ceiling]}" -zonefile "$WORK/service.local.zone" 2>"$WORK/ceiling.log" &
PID[ceiling]=$!
PIDS+=("${PID[ceiling]}")
wait_probe "127.0.0.1:${PORT[ceiling]}" svc-0.service.local 10 || die "ceiling does not answer (see $WORK/ceiling.log)"

SERVERS=(regdns ceiling)
PORT[knot]=$(free_port)
mkdir -p "$WORK/knot"
cat >"$WORK/knot/knot.conf" <<EOF
server:
    rundir: "$WORK/knot"
    listen: 127.0.0.1@${PORT[knot]}
control:
    listen: "$WORK/knot/knot.sock"
log:
  - target: stderr
    any: warning
database:
    storage: "$WORK/knot"
template:
  - id: default
    storage: "$WORK/knot"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: service.local.
    file: "$WORK/service.local.zone"
EOF
"$KNOTD" -c "$WORK/knot/knot.conf" >"$WORK/knot.log" 2>&1 &
PID[knot]=$!
PIDS+=("${PID[knot]}")
if wait_probe "127.0.0.1:${PORT[knot]}" svc-0.service.local 10; then
	SERVERS+=(knot)
	KNOT_STATUS="knotd $KNOT_VER"
else
	KNOT_STATUS="knotd could not start or does not answer (see bench/out/work/knot.log): Knot DNS left out"
	log "$KNOT_STATUS"
fi

# CoreDNS: coredns = the file plugin alone; coredns-cache = file + cache
# (default settings). No log/errors plugins (they would write per query).
start_coredns() { # start_coredns NAME [PLUGIN...]: a CoreDNS serving the zone file
	local s=$1 p
	shift
	PORT[$s]=$(free_port)
	{
		printf 'service.local.:%s {\n    bind 127.0.0.1\n    file "%s"\n' "${PORT[$s]}" "$WORK/service.local.zone"
		for p in "$@"; do printf '    %s\n' "$p"; done
		printf '}\n'
	} >"$WORK/$s.Corefile"
	"$COREDNS" -conf "$WORK/$s.Corefile" -quiet >"$WORK/$s.log" 2>&1 &
	PID[$s]=$!
	PIDS+=("${PID[$s]}")
	if wait_probe "127.0.0.1:${PORT[$s]}" svc-0.service.local 10; then
		SERVERS+=("$s")
	else
		COREDNS_STATUS="$COREDNS_STATUS; $s could not start or does not answer (see $WORK/$s.log): left out"
		log "$s could not start or does not answer (see $WORK/$s.log): left out"
	fi
}
if [ -n "$COREDNS_VER" ]; then
	start_coredns coredns
	start_coredns coredns-cache cache
fi
log "servers: regdns :${PORT[regdns]}, ceiling :${PORT[ceiling]}, knot :${PORT[knot]} ($KNOT_STATUS), coredns :${PORT[coredns]:-n/a}, coredns-cache :${PORT[coredns-cache]:-n/a} ($COREDNS_STATUS)"

# The answers each server gives: they must be the same records.
for s in "${SERVERS[@]}"; do
	for t in SRV A; do
		printf '%-13s %s\n' "$s" "$("$BIN/loadgen" -server "127.0.0.1:${PORT[$s]}" -probe svc-42.service.local -type $t 2>&1)"
	done
done | tee "$WORK/answers.txt" >&2
# answer SERVER TYPE: that answer's rcode, section counts and size, without the time
answer() { awk -v s="$1" -v t="$2:" '$1 == s && $4 == t {$1 = $2 = $3 = $4 = ""; sub(/^ +/, ""); sub(/, [^,]*$/, ""); gsub(/["\\]/, ""); print; exit}' "$WORK/answers.txt"; }

# --- throughput ------------------------------------------------------------
cmdstats() { rcli INFO commandstats | tr -d '\r' | awk -F'[:=,]' '/^cmdstat_/ {sub("cmdstat_", "", $1); print $1, $3}'; }
declare -A REDIS_DELTA
REGDNS_QUERIES=0
add_cmd_delta() { # add_cmd_delta BEFORE AFTER: accumulates AFTER-BEFORE into REDIS_DELTA
	local name n
	while read -r name n; do
		REDIS_DELTA[$name]=$((${REDIS_DELTA[$name]:-0} + n))
	done < <(awk 'NR == FNR {b[$1] = $2; next} {d = $2 - b[$1]; if (d != 0 && $1 != "info") print $1, d}' "$1" "$2")
}

# dnsperf_run SERVER LABEL [extra dnsperf args]: one dnsperf run; sets DP to
# "qps avg_ms max_ms completed lost cpu_s q_per_cpu_s server_socket_drops"
# and keeps the output.
# (Not called in a subshell: it adds to REDIS_DELTA.)
dnsperf_run() {
	local s=$1 label=$2 c0 c1 f d0 d1
	shift 2
	f=$WORK/dnsperf-$label.txt
	d0=$(sock_drops "${PORT[$s]}")
	c0=$(cpu_ticks "${PID[$s]}")
	[ "$s" = regdns ] && cmdstats >"$WORK/cmd0"
	dnsperf -s 127.0.0.1 -p "${PORT[$s]}" -d "$WORK/queries.txt" -l "$SECS" "$@" >"$f" 2>&1 || true
	if [ "$s" = regdns ]; then
		cmdstats >"$WORK/cmd1"
		add_cmd_delta "$WORK/cmd0" "$WORK/cmd1"
	fi
	c1=$(cpu_ticks "${PID[$s]}")
	d1=$(sock_drops "${PORT[$s]}")
	DP=$(awk -v c0="$c0" -v c1="$c1" -v hz="$CLK_TCK" -v drops=$((d1 - d0)) '
		/Queries completed:/ {done = $3}
		/Queries lost:/ {lost = $3}
		/Queries per second:/ {qps = $4}
		/Average Latency/ {avg = $4 * 1000; max = $8; sub(/\)/, "", max); max *= 1000}
		END {cpu = (c1 - c0) / hz; printf "%.0f %.3f %.3f %d %d %.2f %.0f %d\n", qps, avg, max, done, lost, cpu, (cpu > 0 ? done / cpu : 0), drops}' "$f")
	grep -q 'Response codes:.*NOERROR [0-9]* (100.00%)' "$f" || log "warning: $label: not every response was NOERROR: $(grep 'Response codes' "$f")"
	return 0
}

printf 'round\tserver\tqps\tavg_ms\tmax_ms\tcompleted\tlost\tcpu_s\tqueries_per_cpu_s\tserver_socket_drops\n' >"$OUT/runs.tsv"
log "throughput: $ROUNDS rounds x ${SECS}s per server, dnsperf ${DNSPERF_ARGS[*]}"
for r in $(seq 1 "$ROUNDS"); do
	n=${#SERVERS[@]}
	for k in $(seq 0 $((n - 1))); do
		s=${SERVERS[$(((k + r - 1) % n))]} # each round starts with the next server
		dnsperf_run "$s" "$s-$r" "${DNSPERF_ARGS[@]}"
		line=$DP
		printf '%s\t%s\t%s\n' "$r" "$s" "$(tr ' ' '\t' <<<"$line")" >>"$OUT/runs.tsv"
		[ "$s" = regdns ] && REGDNS_QUERIES=$((REGDNS_QUERIES + $(awk '{print $4}' <<<"$line")))
		log "round $r $s: $(awk '{printf "%s qps, avg %s ms, max %s ms, lost %s (server socket drops %s), %s CPU s, %s q/CPU s", $1, $2, $3, $5, $8, $6, $7}' <<<"$line")"
	done
done
col() { awk -F'\t' -v s="$1" -v c="$2" 'NR > 1 && $2 == s {print $c}' "$OUT/runs.tsv"; }
declare -A QPS AVG MAXL LOST SENT CPU QPC QMIN QMAX DROPS
for s in "${SERVERS[@]}"; do
	QPS[$s]=$(col "$s" 3 | median)
	QMIN[$s]=$(col "$s" 3 | sort -g | head -1)
	QMAX[$s]=$(col "$s" 3 | sort -g | tail -1)
	AVG[$s]=$(col "$s" 4 | median)
	MAXL[$s]=$(col "$s" 5 | sort -g | tail -1)
	LOST[$s]=$(col "$s" 7 | awk '{t += $1} END {print t + 0}')
	SENT[$s]=$(awk -F'\t' -v s="$s" 'NR > 1 && $2 == s {t += $6 + $7} END {print t + 0}' "$OUT/runs.tsv")
	CPU[$s]=$(col "$s" 8 | median)
	DROPS[$s]=$(col "$s" 10 | awk '{t += $1} END {print t + 0}')
	QPC[$s]=$(col "$s" 9 | median)
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "nan"}'; }
R_CEIL=$(ratio "${QPS[regdns]}" "${QPS[ceiling]}")
R_KNOT=nan
[ -n "${QPS[knot]:-}" ] && R_KNOT=$(ratio "${QPS[regdns]}" "${QPS[knot]}")
R_CORE=nan
R_CORE_CACHE=nan
if [ -n "${QPS[coredns]:-}" ]; then R_CORE=$(ratio "${QPS[regdns]}" "${QPS[coredns]}"); fi
if [ -n "${QPS[coredns-cache]:-}" ]; then R_CORE_CACHE=$(ratio "${QPS[regdns]}" "${QPS[coredns-cache]}"); fi
log "median qps: regdns ${QPS[regdns]}, ceiling ${QPS[ceiling]}, knot ${QPS[knot]:-n/a}, coredns ${QPS[coredns]:-n/a}, coredns-cache ${QPS[coredns-cache]:-n/a}; regdns/ceiling $R_CEIL, regdns/knot $R_KNOT, regdns/coredns $R_CORE, regdns/coredns-cache $R_CORE_CACHE"

# --- latency at half of regdns's maximum -----------------------------------
RATE=$(awk -v q="${QPS[regdns]}" 'BEGIN {printf "%d", q / 2}')
log "latency: each server at $RATE qps for ${SECS}s, bench/loadgen then dnsperf -Q"
printf 'server\ttarget_qps\tsent_qps\tavg_ms\tp50_ms\tp90_ms\tp99_ms\tp999_ms\tmax_ms\tlost\tsent\tdnsperf_avg_ms\tdnsperf_max_ms\tdnsperf_lost\n' >"$OUT/latency.tsv"
declare -A LG LGDROPS
for s in "${SERVERS[@]}"; do
	d0=$(sock_drops "${PORT[$s]}")
	LG[$s]=$("$BIN/loadgen" -server "127.0.0.1:${PORT[$s]}" -queries "$WORK/queries.txt" -qps "$RATE" \
		-duration "${SECS}s" 2>>"$WORK/loadgen.log")
	LGDROPS[$s]=$(($(sock_drops "${PORT[$s]}") - d0))
	j=${LG[$s]}
	dnsperf_run "$s" "$s-Q" "${DNSPERF_ARGS[@]}" -Q "$RATE"
	dp=$DP
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$RATE" "$(jnum "$j" sent_qps)" \
		"$(jnum "$j" avg_ms)" "$(jnum "$j" p50_ms)" "$(jnum "$j" p90_ms)" "$(jnum "$j" p99_ms)" \
		"$(jnum "$j" p999_ms)" "$(jnum "$j" max_ms)" "$(jnum "$j" lost)" "$(jnum "$j" sent)" \
		"$(awk '{print $2}' <<<"$dp")" "$(awk '{print $3}' <<<"$dp")" "$(awk '{print $5}' <<<"$dp")" >>"$OUT/latency.tsv"
	log "latency $s at $RATE qps: $(tail -1 "$WORK/loadgen.log")"
done
lat() { awk -F'\t' -v s="$1" -v c="$2" 'NR > 1 && $1 == s {print $c}' "$OUT/latency.tsv"; }

log "latency: each server at $FIXED_QPS qps for ${SECS}s, bench/loadgen"
declare -A LGF LGFDROPS
for s in "${SERVERS[@]}"; do
	d0=$(sock_drops "${PORT[$s]}")
	LGF[$s]=$("$BIN/loadgen" -server "127.0.0.1:${PORT[$s]}" -queries "$WORK/queries.txt" -qps "$FIXED_QPS" \
		-duration "${SECS}s" 2>>"$WORK/loadgen.log")
	LGFDROPS[$s]=$(($(sock_drops "${PORT[$s]}") - d0))
	log "latency $s at $FIXED_QPS qps: $(tail -1 "$WORK/loadgen.log")"
done

# --- latency with the load generator on a core of its own --------------------
# On a shared machine the load generator takes about as much CPU as the
# server at these rates, and a query waits for a core the load generator
# holds: the tail above is the rig's as much as the server's. Here each
# server (all its threads) is pinned to CPU 0 and bench/loadgen to CPU 1,
# at the same half rate, as a load generator on another machine would be.
declare -A LGP LGPDROPS
PINNED=0
if [ "$NPROC" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
	PINNED=1
	log "latency: each server pinned to CPU 0, bench/loadgen to CPU 1, at $RATE qps for ${SECS}s"
	for s in "${SERVERS[@]}"; do
		taskset -a -p -c 0 "${PID[$s]}" >/dev/null
		d0=$(sock_drops "${PORT[$s]}")
		LGP[$s]=$(taskset -c 1 "$BIN/loadgen" -server "127.0.0.1:${PORT[$s]}" -queries "$WORK/queries.txt" -qps "$RATE" \
			-duration "${SECS}s" 2>>"$WORK/loadgen.log")
		LGPDROPS[$s]=$(($(sock_drops "${PORT[$s]}") - d0))
		taskset -a -p -c "0-$((NPROC - 1))" "${PID[$s]}" >/dev/null
		log "latency $s pinned at $RATE qps: $(tail -1 "$WORK/loadgen.log")"
	done
else
	log "latency with pinned cores: skipped (needs 2 CPUs and taskset)"
fi

RSS_SMALL=$(rss_mb "${PID[regdns]}" VmRSS)

# --- event to answer ---------------------------------------------------------
log "event-to-answer: $E2A_CHANGES registry changes"
E2A=$("$BIN/e2a" -redis "$REDIS_URL" -dns "127.0.0.1:${PORT[regdns]}" -n "$E2A_CHANGES" 2>"$WORK/e2a.log") || die "e2a failed (see $WORK/e2a.log)"
cat "$WORK/e2a.log" >&2
e2a_all() { sed -n 's/.*"all":{\([^}]*\)}.*/\1/p' <<<"$1"; }
E2A_ALL=$(e2a_all "$E2A")

# --- scale: 100k instances ---------------------------------------------------
stop_pid "${PID[ceiling]}"
[ -n "${PID[knot]:-}" ] && stop_pid "${PID[knot]}"
for s in coredns coredns-cache; do
	if [ -n "${PID[$s]:-}" ]; then stop_pid "${PID[$s]}"; fi
done
stop_pid "${PID[regdns]}"
log "scale: seeding $SCALE_SERVICES x $SCALE_INSTANCES"
SEED_START=$(date +%s%N)
"$BIN/seed" -redis "$REDIS_URL" -flush -services "$SCALE_SERVICES" -instances "$SCALE_INSTANCES" 2>>"$WORK/seed.log"
SEED_S=$(awk -v a="$SEED_START" -v b="$(date +%s%N)" 'BEGIN {printf "%.2f", (b - a) / 1e9}')
start_regdns "$WORK/regdns-scale.log"
SCALE_SYNC_MS=$SYNC_MS
SCALE_START_TO_SYNC=$START_TO_SYNC_S
sleep 2
SCALE_RSS=$(rss_mb "${PID[regdns]}" VmRSS)
SCALE_HWM=$(rss_mb "${PID[regdns]}" VmHWM)
REDIS_MEM=$(rcli INFO memory | tr -d '\r' | sed -n 's/^used_memory_human://p')
log "scale: full sync of $((SCALE_SERVICES * SCALE_INSTANCES)) instances took ${SCALE_SYNC_MS} ms (start to in sync ${SCALE_START_TO_SYNC} s); RSS $SCALE_RSS MB; redis used $REDIS_MEM"
declare -A SAVED_DELTA
for k in "${!REDIS_DELTA[@]}"; do SAVED_DELTA[$k]=${REDIS_DELTA[$k]}; done
REDIS_DELTA=()
dnsperf_run regdns regdns-scale "${DNSPERF_ARGS[@]}"
SCALE_LINE=$DP
read -r -a SCALE_FIELDS <<<"$SCALE_LINE"
declare -A SCALE_DELTA
for k in "${!REDIS_DELTA[@]}"; do SCALE_DELTA[$k]=${REDIS_DELTA[$k]}; done
log "scale: dnsperf on the first 100 services (10 instances each): $(awk '{printf "%s qps, avg %s ms, lost %s", $1, $2, $5}' <<<"$SCALE_LINE")"
SCALE_RSS_AFTER=$(rss_mb "${PID[regdns]}" VmRSS)
E2A_SCALE=$("$BIN/e2a" -redis "$REDIS_URL" -dns "127.0.0.1:${PORT[regdns]}" -n "$E2A_CHANGES" 2>"$WORK/e2a-scale.log") || die "e2a failed (see $WORK/e2a-scale.log)"
cat "$WORK/e2a-scale.log" >&2
E2A_SCALE_ALL=$(e2a_all "$E2A_SCALE")
# Idle cost at scale: CPU and Redis commands over IDLE_SECS without queries,
# long enough (35 s default) to hold one cache.max_age (30 s) full re-read.
IDLE_SECS=${BENCH_IDLE_SECONDS:-35}
log "scale: ${IDLE_SECS}s idle (no queries): CPU and Redis commands"
REDIS_DELTA=()
cmdstats >"$WORK/cmd0"
c0=$(cpu_ticks "${PID[regdns]}")
sleep "$IDLE_SECS"
c1=$(cpu_ticks "${PID[regdns]}")
cmdstats >"$WORK/cmd1"
add_cmd_delta "$WORK/cmd0" "$WORK/cmd1"
declare -A IDLE_DELTA
for k in "${!REDIS_DELTA[@]}"; do IDLE_DELTA[$k]=${REDIS_DELTA[$k]}; done
IDLE_CPU=$(awk -v a="$c0" -v b="$c1" -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / hz}')
SCALE_RSS_IDLE=$(rss_mb "${PID[regdns]}" VmRSS)
SCALE_HWM=$(rss_mb "${PID[regdns]}" VmHWM)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# --- Redis commands during the query runs -------------------------------------
# Every command regdns issued while dnsperf queried it (INFO itself left
# out). A query issues none; what appears is time-driven: PING every second,
# and the cache.max_age (30 s) full re-read of every service, each of which
# is SCAN + one SMEMBERS per service + GET and PTTL of every instance key
# and GET of every health key (3 per instance: a re-read leaves the health
# keys' TTLs to their keyspace notifications).
cmd_get() { local -n a=$1; echo "${a[$2]:-0}"; }
cmd_total() { local -n a=$1; local t=0 k v; for k in "${!a[@]}"; do v=${a[$k]}; t=$((t + v)); done; echo $t; }
cmd_list() { local -n a=$1; local k; for k in "${!a[@]}"; do printf '%s=%s ' "$k" "${a[$k]}"; done | tr ' ' '\n' | sort | tr '\n' ' '; }
RE_READS=$(($(cmd_get SAVED_DELTA smembers) / SERVICES))
UNEXPLAINED=$(($(cmd_get SAVED_DELTA get) + $(cmd_get SAVED_DELTA pttl) - RE_READS * 3 * SERVICES * INSTANCES))

# --- results -------------------------------------------------------------------
# loadgen_table RESULTS DROPS: the table of one bench/loadgen pass, a row per
# server (RESULTS: server -> loadgen JSON line; DROPS: server -> socket drops).
loadgen_table() {
	local -n res=$1 drops=$2
	local s j
	echo "| server | sent qps | avg ms | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | lost / sent (server socket drops) |"
	echo "|---|---|---|---|---|---|---|---|---|"
	for s in "${SERVERS[@]}"; do
		j=${res[$s]}
		echo "| $(label "$s") | $(jnum "$j" sent_qps | awk '{printf "%.0f", $1}') | $(jnum "$j" avg_ms) | $(jnum "$j" p50_ms) | $(jnum "$j" p90_ms) | $(jnum "$j" p99_ms) | $(jnum "$j" p999_ms) | $(jnum "$j" max_ms) | $(jnum "$j" lost) / $(jnum "$j" sent) (${drops[$s]}) |"
	done
}
num_or_null() { if [[ $1 =~ ^-?[0-9.]+(e[-+]?[0-9]+)?$ ]]; then echo "$1"; else echo null; fi; }
{
	printf '{\n'
	printf '  "date": "%s",\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	printf '  "revision": "%s", "uncommitted_files": %s,\n' "$REV" "$DIRTY"
	printf '  "machine": {"nproc": %s, "cpu": "%s", "kernel": "%s", "go": "%s", "load_start": "%s", "load_end": "%s"},\n' \
		"$NPROC" "$CPU_MODEL" "$KERNEL" "$GOVER" "$LOAD_START" "$LOAD_END"
	printf '  "tools": {"dnsperf": "%s", "knot": "%s", "redis": "%s", "knot_status": "%s", "coredns": "%s", "coredns_requested": "%s", "coredns_binary": "%s", "coredns_status": "%s"},\n' \
		"$DNSPERF_VER" "$KNOT_VER" "$REDIS_VER" "$KNOT_STATUS" "$COREDNS_VER" "$COREDNS_VERSION" "$COREDNS" "$COREDNS_STATUS"
	printf '  "config": {"rounds": %s, "seconds": %s, "dnsperf_args": "%s", "services": %s, "instances": %s},\n' \
		"$ROUNDS" "$SECS" "${DNSPERF_ARGS[*]}" "$SERVICES" "$INSTANCES"
	printf '  "throughput": {\n'
	first=1
	for s in "${SERVERS[@]}"; do
		[ $first -eq 1 ] || printf ',\n'
		first=0
		printf '    "%s": {"qps_median": %s, "qps_runs": [%s], "avg_latency_ms_median": %s, "max_latency_ms": %s, "lost": %s, "sent": %s, "server_socket_drops": %s, "cpu_s_median": %s, "queries_per_cpu_s_median": %s}' \
			"$s" "${QPS[$s]}" "$(col "$s" 3 | paste -sd,)" "${AVG[$s]}" "${MAXL[$s]}" "${LOST[$s]}" "${SENT[$s]}" "${DROPS[$s]}" "${CPU[$s]}" "${QPC[$s]}"
	done
	printf '\n  },\n'
	printf '  "ratios": {"regdns_over_ceiling": %s, "regdns_over_knot": %s, "regdns_over_coredns": %s, "regdns_over_coredns_cache": %s},\n' \
		"$(num_or_null "$R_CEIL")" "$(num_or_null "$R_KNOT")" "$(num_or_null "$R_CORE")" "$(num_or_null "$R_CORE_CACHE")"
	printf '  "answers": {\n'
	first=1
	for s in "${SERVERS[@]}"; do
		[ $first -eq 1 ] || printf ',\n'
		first=0
		printf '    "%s": {"srv": "%s", "a": "%s"}' "$s" "$(answer "$s" SRV)" "$(answer "$s" A)"
	done
	printf '\n  },\n'
	printf '  "latency_at_qps": %s,\n  "latency": {\n' "$RATE"
	first=1
	for s in "${SERVERS[@]}"; do
		[ $first -eq 1 ] || printf ',\n'
		first=0
		printf '    "%s": {"loadgen": %s, "server_socket_drops": %s, "dnsperf_avg_ms": %s, "dnsperf_max_ms": %s}' "$s" "${LG[$s]}" "${LGDROPS[$s]}" \
			"$(num_or_null "$(lat "$s" 12)")" "$(num_or_null "$(lat "$s" 13)")"
	done
	printf '\n  },\n'
	printf '  "latency_fixed_qps": %s,\n  "latency_fixed": {\n' "$FIXED_QPS"
	first=1
	for s in "${SERVERS[@]}"; do
		[ $first -eq 1 ] || printf ',\n'
		first=0
		printf '    "%s": {"loadgen": %s, "server_socket_drops": %s}' "$s" "${LGF[$s]}" "${LGFDROPS[$s]}"
	done
	printf '\n  },\n'
	printf '  "latency_half_pinned": {\n'
	first=1
	for s in "${SERVERS[@]}"; do
		[ -n "${LGP[$s]:-}" ] || continue
		[ $first -eq 1 ] || printf ',\n'
		first=0
		printf '    "%s": {"loadgen": %s, "server_socket_drops": %s}' "$s" "${LGP[$s]}" "${LGPDROPS[$s]}"
	done
	printf '\n  },\n'
	printf '  "redis_commands_during_regdns_query_runs": {"queries": %s, "commands": {%s}, "total": %s, "full_re_reads": %s, "get_pttl_not_from_re_reads": %s},\n' \
		"$REGDNS_QUERIES" "$(for k in "${!SAVED_DELTA[@]}"; do printf '"%s": %s, ' "$k" "${SAVED_DELTA[$k]}"; done | sed 's/, $//')" \
		"$(cmd_total SAVED_DELTA)" "$RE_READS" "$UNEXPLAINED"
	printf '  "regdns_rss_mb": %s,\n' "$(num_or_null "$RSS_SMALL")"
	printf '  "full_sync_ms": %s,\n' "$(num_or_null "$SMALL_SYNC_MS")"
	printf '  "event_to_answer": %s,\n' "$E2A"
	printf '  "scale": {"services": %s, "instances": %s, "seed_s": %s, "full_sync_ms": %s, "start_to_sync_s": %s, "rss_mb": %s, "rss_peak_mb": %s, "rss_mb_after_queries": %s, "rss_mb_after_idle": %s, "redis_used_memory": "%s",\n' \
		"$SCALE_SERVICES" "$SCALE_INSTANCES" "$SEED_S" "$(num_or_null "$SCALE_SYNC_MS")" "$SCALE_START_TO_SYNC" \
		"$(num_or_null "$SCALE_RSS")" "$(num_or_null "$SCALE_HWM")" "$(num_or_null "$SCALE_RSS_AFTER")" "$(num_or_null "$SCALE_RSS_IDLE")" "$REDIS_MEM"
	printf '    "dnsperf": {"qps": %s, "avg_ms": %s, "max_ms": %s, "completed": %s, "lost": %s, "cpu_s": %s, "queries_per_cpu_s": %s, "server_socket_drops": %s},\n' "${SCALE_FIELDS[@]}"
	printf '    "idle_cpu_s": %s, "idle_seconds": %s, "idle_redis_commands": {%s},\n' "$IDLE_CPU" "$IDLE_SECS" \
		"$(for k in "${!IDLE_DELTA[@]}"; do printf '"%s": %s, ' "$k" "${IDLE_DELTA[$k]}"; done | sed 's/, $//')"
	printf '    "redis_commands_during_query_run": {%s},\n' "$(for k in "${!SCALE_DELTA[@]}"; do printf '"%s": %s, ' "$k" "${SCALE_DELTA[$k]}"; done | sed 's/, $//')"
	printf '    "event_to_answer": %s}\n' "$E2A_SCALE"
	printf '}\n'
} >"$OUT/results.json"

# --- summary table -------------------------------------------------------------
label() {
	case $1 in
	regdns) echo "regdns" ;;
	ceiling) echo "bench/ceiling (miekg/dns loop, packed map)" ;;
	knot) echo "Knot DNS $KNOT_VER" ;;
	coredns) echo "CoreDNS $COREDNS_VER (file)" ;;
	coredns-cache) echo "CoreDNS $COREDNS_VER (file + cache)" ;;
	esac
}
ok() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {if (v == "" || v == "nan") {print "not measured"; exit}
	m = (op == ">=") ? (v + 0 >= t + 0) : (v + 0 < t + 0); print (m ? "met" : "**missed**")}'; }
E2A_P99=$(jnum "{$E2A_ALL}" p99_ms)
P99_REGDNS=$(lat regdns 7)
{
	echo "Run of $(date -u +%Y-%m-%dT%H:%M:%SZ), regdns at $REV ($DIRTY files uncommitted): $NPROC x $CPU_MODEL, Linux $KERNEL, $GOVER; dnsperf $DNSPERF_VER, $KNOT_STATUS, $COREDNS_STATUS, redis $REDIS_VER."
	echo "Load average at start $LOAD_START, at end $LOAD_END. Load generator and servers share the cores."
	echo
	echo "### Throughput: $SERVICES services x $INSTANCES instances, SRV and A, median of $ROUNDS x ${SECS} s, dnsperf ${DNSPERF_ARGS[*]} (unthrottled)"
	echo
	echo "| server | qps (median) | qps (min-max) | avg latency ms (median) | max latency ms | lost / sent (server socket drops) | server CPU s per run | queries per server CPU-second |"
	echo "|---|---|---|---|---|---|---|---|"
	for s in "${SERVERS[@]}"; do
		echo "| $(label "$s") | ${QPS[$s]} | ${QMIN[$s]}-${QMAX[$s]} | ${AVG[$s]} | ${MAXL[$s]} | ${LOST[$s]} / ${SENT[$s]} (${DROPS[$s]}) | ${CPU[$s]} | ${QPC[$s]} |"
	done
	echo
	echo "regdns / ceiling: **$R_CEIL**x; regdns / Knot DNS: **$R_KNOT**x; regdns / CoreDNS (file): **$R_CORE**x; regdns / CoreDNS (file + cache): **$R_CORE_CACHE**x."
	echo
	echo "### Answers to svc-42.service.local (no EDNS), as bench/loadgen -probe prints them"
	echo
	echo "| server | SRV | A |"
	echo "|---|---|---|"
	for s in "${SERVERS[@]}"; do
		echo "| $(label "$s") | $(answer "$s" SRV) | $(answer "$s" A) |"
	done
	echo
	differ=""
	for s in "${SERVERS[@]}"; do
		if [ "$(answer "$s" SRV)" != "$(answer regdns SRV)" ] || [ "$(answer "$s" A)" != "$(answer regdns A)" ]; then differ="$differ $s"; fi
	done
	if [ -n "$differ" ]; then
		echo "Not the same answer as regdns's:$differ.$(case " $differ " in *" coredns"*) echo " CoreDNS's file plugin puts the zone's NS record in the authority section of every positive answer, and CoreDNS compresses names only when a reply would not fit the client's buffer (512 octets without EDNS): its A answer goes out uncompressed." ;; esac)"
	else
		echo "Every server gives the same answer sections and sizes."
	fi
	echo
	echo "### Latency at $RATE qps (half of regdns's median), ${SECS} s per server"
	echo
	echo "| server | sent qps | avg ms | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | lost / sent (server socket drops) | dnsperf -Q avg ms | dnsperf -Q max ms |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|"
	for s in "${SERVERS[@]}"; do
		echo "| $(label "$s") | $(lat "$s" 3 | awk '{printf "%.0f", $1}') | $(lat "$s" 4) | $(lat "$s" 5) | $(lat "$s" 6) | $(lat "$s" 7) | $(lat "$s" 8) | $(lat "$s" 9) | $(lat "$s" 10) / $(lat "$s" 11) (${LGDROPS[$s]}) | $(lat "$s" 12) | $(lat "$s" 13) |"
	done
	echo
	echo "p50-p99.9 from bench/loadgen (open-loop, per-query); the last two columns from dnsperf -Q $RATE."
	echo
	echo "### Latency at $FIXED_QPS qps, ${SECS} s per server (bench/loadgen)"
	echo
	loadgen_table LGF LGFDROPS
	echo
	if [ "$PINNED" = 1 ]; then
		echo "### Latency at $RATE qps (half of regdns's median), the server on CPU 0, bench/loadgen on CPU 1 (taskset), ${SECS} s per server"
		echo
		loadgen_table LGP LGPDROPS
		echo
		echo "Each server had one core here (all its threads pinned to CPU 0; regdns keeps its 2 sockets), the load generator the other."
		echo
	fi
	echo "### Registry"
	echo
	echo "| measure | value |"
	echo "|---|---|"
	echo "| full sync, $SERVICES x $INSTANCES | $SMALL_SYNC_MS ms |"
	echo "| regdns RSS, $SERVICES x $INSTANCES, after the query runs | $RSS_SMALL MB |"
	echo "| Redis commands while regdns was queried ($REGDNS_QUERIES queries) | $(cmd_list SAVED_DELTA)(total $(cmd_total SAVED_DELTA)) |"
	echo "| of which GET/PTTL not explained by the $RE_READS cache.max_age full re-reads (3 per instance each) | $UNEXPLAINED |"
	echo "| event to answer, $E2A_CHANGES changes: all | $(jnum "{$E2A_ALL}" n) changes, p50 $(jnum "{$E2A_ALL}" p50_ms) ms, p99 $E2A_P99 ms, max $(jnum "{$E2A_ALL}" max_ms) ms, $(jnum "{$E2A_ALL}" timeouts) timeouts |"
	for k in register unhealthy healthy deregister; do
		kj=$(sed -n "s/.*\"$k\":{\([^}]*\)}.*/\1/p" <<<"$E2A")
		echo "| event to answer: $k | p50 $(jnum "{$kj}" p50_ms) ms, p99 $(jnum "{$kj}" p99_ms) ms, max $(jnum "{$kj}" max_ms) ms |"
	done
	echo
	echo "### Scale: $SCALE_SERVICES services x $SCALE_INSTANCES instances ($((SCALE_SERVICES * SCALE_INSTANCES)))"
	echo
	echo "| measure | value |"
	echo "|---|---|"
	echo "| seeding (pipelines of 1,000 instances) | $SEED_S s |"
	echo "| full sync (regdns's \"registry in sync\" took) | $SCALE_SYNC_MS ms |"
	echo "| process start to in sync | $SCALE_START_TO_SYNC s |"
	echo "| regdns RSS 2 s after sync | $SCALE_RSS MB |"
	echo "| regdns RSS after a query run | $SCALE_RSS_AFTER MB |"
	echo "| Redis used memory | $REDIS_MEM |"
	echo "| dnsperf ${SECS} s, first 100 services (10 instances each) | $(awk '{printf "%s qps, avg %s ms, max %s ms, lost %s, %s q/CPU s", $1, $2, $3, $5, $7}' <<<"$SCALE_LINE") |"
	echo "| Redis commands during that run | $(cmd_list SCALE_DELTA)(total $(cmd_total SCALE_DELTA)) |"
	echo "| event to answer, $E2A_CHANGES changes | p50 $(jnum "{$E2A_SCALE_ALL}" p50_ms) ms, p99 $(jnum "{$E2A_SCALE_ALL}" p99_ms) ms, max $(jnum "{$E2A_SCALE_ALL}" max_ms) ms, $(jnum "{$E2A_SCALE_ALL}" timeouts) timeouts |"
	echo "| idle ${IDLE_SECS} s (no queries): regdns CPU, Redis commands | $IDLE_CPU CPU s; $(cmd_list IDLE_DELTA)(total $(cmd_total IDLE_DELTA)) |"
	echo "| regdns RSS after the idle period (peak over the whole run) | $SCALE_RSS_IDLE MB ($SCALE_HWM MB) |"
	echo
	echo "### Targets of issue 5"
	echo
	echo "| target | measured | |"
	echo "|---|---|---|"
	echo "| qps >= 1.5x bench/ceiling | ${R_CEIL}x | $(ok "$R_CEIL" ">=" 1.5) |"
	echo "| qps >= 1.0x Knot DNS (stretch) | ${R_KNOT}x | $(ok "$R_KNOT" ">=" 1.0) |"
	echo "| qps >= 2.5x CoreDNS (file + cache) | ${R_CORE_CACHE}x (${R_CORE}x CoreDNS file alone) | $(ok "$R_CORE_CACHE" ">=" 2.5) |"
	echo "| p99 < 1 ms at half of the maximum, load generator sharing the cores | $P99_REGDNS ms at $RATE qps ($(jnum "${LGF[regdns]}" p99_ms) ms at $FIXED_QPS qps) | $(ok "$P99_REGDNS" "<" 1) |"
	if [ "$PINNED" = 1 ]; then
		P99_PINNED=$(jnum "${LGP[regdns]}" p99_ms)
		echo "| p99 < 1 ms at half of the maximum, load generator on a core of its own | $P99_PINNED ms at $RATE qps (regdns on one core) | $(ok "$P99_PINNED" "<" 1) |"
	fi
	echo "| event-to-answer p99 < 10 ms | $E2A_P99 ms ($SERVICES x $INSTANCES), $(jnum "{$E2A_SCALE_ALL}" p99_ms) ms (scale) | $(ok "$(printf '%s\n%s\n' "$E2A_P99" "$(jnum "{$E2A_SCALE_ALL}" p99_ms)" | sort -g | tail -1)" "<" 10) |"
	echo "| full sync of 100k instances < 2 s | $SCALE_SYNC_MS ms ($((SCALE_SERVICES * SCALE_INSTANCES)) instances) | $(ok "$SCALE_SYNC_MS" "<" 2000) |"
	echo "| RSS with 100k instances < 300 MB | $SCALE_RSS MB (peak $SCALE_HWM MB) | $(ok "$SCALE_HWM" "<" 300) |"
	echo "| Redis commands per cached query: 0 | $UNEXPLAINED GET/PTTL beyond the timed re-reads, over $REGDNS_QUERIES queries | $(ok "${UNEXPLAINED#-}" "<" 1) |"
} >"$OUT/summary.md"

# --- plot ------------------------------------------------------------------------
xtic() { case $1 in coredns-cache) printf '%s\n' 'coredns\n+cache' ;; *) printf '%s\n' "$1" ;; esac; } # a label on two lines fits under its bars
for s in "${SERVERS[@]}"; do
	printf '"%s" %s %s %s\n' "$(xtic "$s")" "${QPS[$s]}" "${QMIN[$s]}" "${QMAX[$s]}"
done >"$WORK/qps.dat"
for s in "${SERVERS[@]}"; do
	printf '"%s" %s %s %s %s\n' "$(xtic "$s")" "$(lat "$s" 4)" "$(lat "$s" 5)" "$(lat "$s" 7)" "$(lat "$s" 8)"
done >"$WORK/lat.dat"
for s in "${SERVERS[@]}"; do
	j=${LGF[$s]}
	printf '"%s" %s %s %s %s\n' "$(xtic "$s")" "$(jnum "$j" avg_ms)" "$(jnum "$j" p50_ms)" "$(jnum "$j" p99_ms)" "$(jnum "$j" p999_ms)"
done >"$WORK/latfixed.dat"
gnuplot <<EOF || log "gnuplot failed: no plot"
set terminal pngcairo size 1500,540 font "sans,10"
set output "$OUT/bench.png"
set multiplot layout 1,3 title "$(printf '%s vs ' "${SERVERS[@]}" | sed 's/ vs $//'): $SERVICES services x $INSTANCES, SRV+A, loopback, $NPROC x $CPU_MODEL (load generator on the same cores)"
set style fill solid 0.8 border -1
set grid ytics
set bmargin 4
set yrange [0:*]
set key top right
set style data histograms
set style histogram errorbars gap 2 lw 1
set title "throughput: median (min-max) of $ROUNDS x ${SECS} s\ndnsperf ${DNSPERF_ARGS[*]}"
set ylabel "queries per second"
plot "$WORK/qps.dat" using 2:3:4:xtic(1) notitle lc rgb "#4477aa", \
     "" using (\$0):(\$2):(sprintf("%.0fk", \$2/1000)) with labels offset 2.5,0.8 notitle
set style histogram clustered gap 1
set logscale y
set yrange [0.01:*]
set ylabel "milliseconds (log scale)"
set key top left
set title "latency at $RATE qps (half of regdns's median)\nbench/loadgen, ${SECS} s"
plot "$WORK/lat.dat" using 2:xtic(1) title "avg" lc rgb "#4477aa", \
     "" using 3 title "p50" lc rgb "#66ccee", \
     "" using 4 title "p99" lc rgb "#ee6677", \
     "" using 5 title "p99.9" lc rgb "#aa3377"
set title "latency at $FIXED_QPS qps\nbench/loadgen, ${SECS} s"
plot "$WORK/latfixed.dat" using 2:xtic(1) title "avg" lc rgb "#4477aa", \
     "" using 3 title "p50" lc rgb "#66ccee", \
     "" using 4 title "p99" lc rgb "#ee6677", \
     "" using 5 title "p99.9" lc rgb "#aa3377"
unset multiplot
EOF

cat "$OUT/summary.md"
log "results: $OUT/results.json, $OUT/summary.md, $OUT/bench.png (logs in $WORK)"
