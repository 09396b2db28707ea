# Shell helpers the benchmark scripts share. Sourced after the script has
# defined log and die; uses the script's TMP, PIDS, USED_PORTS and REDIS_PORT.

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

CLK_TCK=$(getconf CLK_TCK)
