# Shell helpers the benchmark scripts share, sourced from the repository
# root. bench_start sets up TMP and the bookkeeping the others use: PIDS,
# PGROUPS, USED_PORTS and FAILED; start_redis sets REDIS_PORT for rcli.

log() { printf '%s\n' "$*" >&2; }
die() {
	log "bench/${0##*/}: $*"
	exit 1
}

# need CMD...: dies naming the first command that is not in PATH.
need() {
	local tool
	for tool; do
		command -v "$tool" >/dev/null || die "$tool not found"
	done
}

# whole_numbers NAME...: dies unless every named variable is a whole number.
whole_numbers() {
	local n
	for n; do
		[[ ${!n} =~ ^[0-9]+$ ]] || die "$n must be a whole number, not '${!n}'"
	done
}

# bench_start TEMPLATE: makes TMP with mktemp -d TEMPLATE, readable by the
# users servers drop to, and has cleanup run on exit. Also notes, before any
# load, what the report shows of the machine: LOADAVG and COMMIT.
bench_start() {
	TMP=$(mktemp -d "$1")
	chmod 755 "$TMP"
	PIDS=()    # every background process the script started
	PGROUPS=() # process groups to kill once their leaders have been stopped
	USED_PORTS=" "
	FAILED=0
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
	COMMIT=$(git describe --always --dirty 2>/dev/null || echo "(not a git checkout)")
}

# cleanup stops what is left, newest first: the load generator before the
# servers it talks to. Then whatever is left of the process groups, such
# as a server's worker processes, and TMP unless KEEP=1.
cleanup() {
	local i
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		stop "${PIDS[i]}"
	done
	for i in "${PGROUPS[@]}"; do
		kill -KILL -- "-$i" 2>/dev/null || true
	done
	if [[ $KEEP == 1 ]]; then
		log "kept $TMP"
	else
		rm -rf "$TMP"
	fi
}

# build PKG...: go build each package, e.g. cmd/mailgw, into $TMP/NAME,
# NAME being its last path element.
build() {
	local pkg
	log "building $*"
	for pkg; do
		go build -o "$TMP/${pkg##*/}" "./$pkg"
	done
}

# alive PID: the process runs (exists and is not a zombie waiting for wait).
alive() {
	local state
	state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
	[[ -n $state && $state != Z ]]
}

# stop PID: SIGTERM, up to 10 s for it to exit, then SIGKILL; reaps it.
stop() {
	local pid=$1 i
	if alive "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			alive "$pid" || break
			sleep 0.1
		done
		alive "$pid" && kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null || true
}

# forget PID: it was stopped and waited for; cleanup leaves it alone.
forget() {
	local p keep=()
	for p in "${PIDS[@]}"; do
		[[ $p == "$1" ]] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}

# free_port prints a loopback TCP port nobody listens on and this script
# has not handed out yet.
free_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + RANDOM % 12000))
		[[ $USED_PORTS == *" $p "* ]] && continue
		if command -v ss >/dev/null; then
			ss -Htln "sport = :$p" | grep -q . && continue
		elif (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			continue
		fi
		USED_PORTS+="$p "
		echo "$p"
		return 0
	done
	die "no free port found"
}

# cpu_ticks PID: user + system CPU time of a process (all its threads) in
# clock ticks.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

rcli() { timeout 30 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

# elapsed START END: seconds between two `date +%s.%N` stamps.
elapsed() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.6f", e - s }'; }

# median of its arguments.
median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# start_redis: a redis-server on a free loopback port in $TMP/redis, with
# the append-only file fsynced every second as production would run it;
# sets REDIS_PORT and REDIS_PID and waits (20 s at most) for it to answer.
start_redis() {
	local i
	REDIS_PORT=$(free_port)
	mkdir -p "$TMP/redis"
	redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$TMP/redis" \
		--appendonly yes --appendfsync everysec --save '' \
		--daemonize no --logfile "$TMP/redis.log" &
	PIDS+=($!)
	REDIS_PID=$!
	for ((i = 0; ; i++)); do
		alive "$REDIS_PID" || die "redis-server exited while starting: $(tail -5 "$TMP/redis.log")"
		[[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] && break
		((i < 200)) || die "redis-server did not answer within 20 s"
		sleep 0.1
	done
}

# machine: the date and the machine, for the report's first line.
machine() {
	printf '%s, %s CPUs, %s' "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
}

# finish: the exit status, 1 with a note when a run failed.
finish() {
	if ((FAILED)); then
		echo "some runs failed or stream counts did not match (see above)"
		exit 1
	fi
}

CLK_TCK=$(getconf CLK_TCK)
