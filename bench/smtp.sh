#!/usr/bin/env bash
# SMTP benchmark: mailgw against Postfix's smtp-sink under the same load.
#
# smtp-sink is Postfix's do-nothing SMTP server: it answers every command
# and throws the message away, so it measures the load generator and the
# loopback network, and sets the ceiling mailgw is compared with. mailgw
# runs as `mailgw serve` on a real redis-server (AOF on, fsync every
# second, no RDB snapshots), so every accepted message is parsed, looked up
# and written to its space's stream before the 250.
#
# A third server, bench/gosmtpnull, is go-smtp (the library mailgw is built
# on) with a backend that discards everything: the rate no server built on
# go-smtp can beat here, which splits the gap between smtp-sink and mailgw
# into the library's part and mailgw's own.
#
# All three servers get the identical load from Postfix's smtp-source:
#
#   reuse     SESSIONS parallel sessions, several messages per connection (-d)
#   new-conn  SESSIONS parallel sessions, a new connection per message
#   latency   1 session, messages one after another over one connection;
#             reported as milliseconds per message
#   memory    BIG_MESSAGES sessions sending one BIG_SIZE message each at
#             once, against mailgw only: peak RSS, and how many were
#             accepted and how many got 451 4.3.1 (in-flight byte budget)
#
# Each measured run of mailgw gets a freshly flushed Redis and a freshly
# started mailgw, so its peak RSS (VmHWM) is its own. After it, the number
# of entries in the space's request stream must equal the messages sent:
# smtp-source gives each message its own Message-ID, so no message is
# taken for a duplicate and every 250 stands for a write. The rates in the
# table are the median of RUNS runs; RSS is the highest of them. The table
# also shows the CPU time (user + system) mailgw and redis-server spent
# per message, the steadier figure on a busy machine.
#
# Run from the repository root:   bench/smtp.sh
# Needs: go, redis-server, redis-cli, /usr/sbin/smtp-source and
# /usr/sbin/smtp-sink (Debian packages golang, redis-server, postfix).
#
# Settings, from the environment (defaults in brackets):
#   MESSAGES          messages per run of reuse and new-conn [5000]
#   SESSIONS          parallel sessions of reuse and new-conn [20]
#   SIZE              payload bytes per message, without headers [4096]
#   LATENCY_MESSAGES  messages per latency run [1000]
#   RUNS              runs of each load per server; median reported [3]
#   BIG_MESSAGES      messages (and sessions) of the memory run [10]
#   BIG_SIZE          payload bytes of each memory-run message [20971520]
#   MAX_MESSAGE_BYTES mailgw smtp.max_message_bytes [26214400]
#   MAX_INFLIGHT      mailgw smtp.max_inflight_bytes, 0 = default (96 MiB) [0]
#   MAILGW_GOMEMLIMIT GOMEMLIMIT for the mailgw process only, e.g. 200MiB [unset]
#   LOADS             which loads to run [reuse new-conn latency memory]
#   RUN_TIMEOUT       seconds any one smtp-source run may take [600]
#   KEEP              1 keeps the temporary directory (logs, config) [0]
#   SMTP_SOURCE, SMTP_SINK  paths of the Postfix tools [/usr/sbin/...]
#
# Exit status: 0 when every run completed and every stream count matched,
# 1 otherwise. Targets are reported, not enforced.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

MESSAGES=${MESSAGES:-5000}
SESSIONS=${SESSIONS:-20}
SIZE=${SIZE:-4096}
LATENCY_MESSAGES=${LATENCY_MESSAGES:-1000}
RUNS=${RUNS:-3}
BIG_MESSAGES=${BIG_MESSAGES:-10}
BIG_SIZE=${BIG_SIZE:-20971520}
MAX_MESSAGE_BYTES=${MAX_MESSAGE_BYTES:-26214400}
MAX_INFLIGHT=${MAX_INFLIGHT:-0}
MAILGW_GOMEMLIMIT=${MAILGW_GOMEMLIMIT:-}
LOADS=${LOADS:-reuse new-conn latency memory}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
KEEP=${KEEP:-0}
SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
SMTP_SINK=${SMTP_SINK:-/usr/sbin/smtp-sink}

# Targets from the project's issue.
TARGET_RATIO=0.5      # mailgw msg/s over smtp-sink msg/s, 20 sessions
TARGET_RSS_MB=256     # mailgw peak RSS in every run

SENDER=carol@example.com
RCPT=it@example.com
HELO=loadgen.example  # smtp-source -M: HELO name and Message-ID domain
STREAM='mailgw:{IT}:requests'

need go redis-server redis-cli timeout awk
for tool in "$SMTP_SOURCE" "$SMTP_SINK"; do
	[[ -x $tool ]] || die "$tool not found (Debian: apt-get install postfix)"
done
whole_numbers MESSAGES SESSIONS SIZE LATENCY_MESSAGES RUNS BIG_MESSAGES BIG_SIZE MAX_MESSAGE_BYTES MAX_INFLIGHT RUN_TIMEOUT
((RUNS >= 1)) || die "RUNS must be at least 1"

MAILGW_PID=""

# wait_smtp PORT PID NAME: until the server greets with 220 (20 s at most).
wait_smtp() {
	local port=$1 pid=$2 name=$3 i line
	for ((i = 0; i < 200; i++)); do
		alive "$pid" || die "$name exited while starting (KEEP=1 keeps the logs)"
		line=$( (exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 0
			read -r -t 2 l <&3 || true
			printf 'QUIT\r\n' >&3 || true
			echo "$l") 2>/dev/null) || true
		[[ $line == 220* ]] && return 0
		sleep 0.1
	done
	die "$name did not greet on port $port within 20 s"
}

# ---------------------------------------------------------------- setup

bench_start "${TMPDIR:-/tmp}/mailgw-bench.XXXXXX"
build cmd/mailgw bench/gosmtpnull
start_redis

SINK_PORT=$(free_port)
sink_user=()
# smtp-sink refuses to run as root without dropping privileges.
[[ $(id -u) == 0 ]] && sink_user=(-u nobody)
"$SMTP_SINK" "${sink_user[@]}" "127.0.0.1:$SINK_PORT" 1024 >"$TMP/smtp-sink.log" 2>&1 &
PIDS+=($!)
SINK_PID=$!
wait_smtp "$SINK_PORT" "$SINK_PID" smtp-sink

GOSMTP_PORT=$(free_port)
"$TMP/gosmtpnull" "127.0.0.1:$GOSMTP_PORT" >"$TMP/gosmtpnull.log" 2>&1 &
PIDS+=($!)
GOSMTP_PID=$!
wait_smtp "$GOSMTP_PORT" "$GOSMTP_PID" gosmtpnull

MAILGW_PORT=$(free_port)
inflight_line=""
((MAX_INFLIGHT > 0)) && inflight_line="  max_inflight_bytes: $MAX_INFLIGHT"
HTTP_PORT=$(free_port)
# All the load comes from one sender and one address, to one space, which
# the flood limits would stop within a minute. They are set far above the
# load rather than off, so the limiter's own cost is still measured. Should
# a limit still apply, smtp-source stops at the first 451 and the run fails:
# it cannot go unnoticed. Settings this mailgw does not know (the limits
# are newer than the rest) are dropped below, so each sits on one line.
UNLIMITED="{count: 1000000000, window: 1m}"
cat >"$TMP/mailgw.yaml" <<EOF
hostname: mx.example.com
redis:
  url: redis://127.0.0.1:$REDIS_PORT/0
smtp:
  listen: 127.0.0.1:$MAILGW_PORT
  max_message_bytes: $MAX_MESSAGE_BYTES
$inflight_line
  shutdown_grace: 5s
  connection_rate_per_ip: $UNLIMITED
  message_rate_per_ip: $UNLIMITED
http:
  listen: 127.0.0.1:$HTTP_PORT
access:
  internal_domains: [example.com]
rate: {sender: $UNLIMITED, space: $UNLIMITED}
spaces:
  - key: IT
    name: IT help
    addresses: [$RCPT]
    channel_access: open
customers:
  - {email: $SENDER, name: Carol, type: internal, status: active}
EOF
for ((i = 0; ; i++)); do
	"$TMP/mailgw" check --config "$TMP/mailgw.yaml" >/dev/null 2>"$TMP/check.log" && break
	unknown=$(sed -n 's/^.*unknown field (line \([0-9]*\)).*$/\1/p' "$TMP/check.log")
	if ((i == 3)) || [[ -z $unknown ]]; then
		die "mailgw check rejects the generated config: $(cat "$TMP/check.log")"
	fi
	for n in $unknown; do
		log "config: this mailgw does not know '$(sed -n "${n}p" "$TMP/mailgw.yaml" | sed 's/^ *//; s/:.*//')': dropped"
		sed -i "${n}s/.*//" "$TMP/mailgw.yaml"
	done
done

# start_mailgw NAME: flush Redis and start a fresh mailgw; its stderr (one
# JSON line per decision) goes to $TMP/mailgw-NAME.log.
start_mailgw() {
	rcli flushall >/dev/null
	if [[ -n $MAILGW_GOMEMLIMIT ]]; then
		GOMEMLIMIT=$MAILGW_GOMEMLIMIT "$TMP/mailgw" serve --config "$TMP/mailgw.yaml" >>"$TMP/mailgw.out" 2>"$TMP/mailgw-$1.log" &
	else
		"$TMP/mailgw" serve --config "$TMP/mailgw.yaml" >>"$TMP/mailgw.out" 2>"$TMP/mailgw-$1.log" &
	fi
	MAILGW_PID=$!
	PIDS+=("$MAILGW_PID")
	wait_smtp "$MAILGW_PORT" "$MAILGW_PID" mailgw
}

# stop_mailgw stops mailgw and sets HWM to its peak RSS in kB.
stop_mailgw() {
	HWM=$(awk '/^VmHWM:/ { print $2 }' "/proc/$MAILGW_PID/status" 2>/dev/null || true)
	HWM=${HWM:-0}
	stop "$MAILGW_PID"
	forget "$MAILGW_PID"
	MAILGW_PID=""
}

# source_run PORT NAME SMTP-SOURCE-FLAGS...: runs smtp-source and sets T
# to the wall time in seconds. Its output goes to $TMP/source-NAME.log. It
# runs in the background and is waited for, so that a signal to this
# script is handled at once.
source_run() {
	local port=$1 name=$2 start end pid rc=0
	shift 2
	start=$(date +%s.%N)
	timeout "$RUN_TIMEOUT" "$SMTP_SOURCE" "$@" -M "$HELO" -f "$SENDER" -t "$RCPT" \
		"127.0.0.1:$port" >"$TMP/source-$name.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	wait "$pid" || rc=$?
	end=$(date +%s.%N)
	forget "$pid"
	if ((rc != 0)); then
		log "smtp-source failed against $name (status $rc): $(tail -3 "$TMP/source-$name.log")"
		return 1
	fi
	T=$(elapsed "$start" "$end")
}

# ---------------------------------------------------------------- loads

ROWS=()
RSS_MAX_KB=0

# measure LOAD COUNT SMTP-SOURCE-FLAGS...: RUNS runs against smtp-sink,
# gosmtpnull and mailgw, interleaved, and one row for the table.
measure() {
	local load=$1 count=$2 r t hwm xlen sink_t=() null_t=() gw_t=() peak=0 streams=""
	local c0 gw0 rd0 sink_cpu=() null_cpu=() gw_cpu=() rd_cpu=()
	shift 2
	for ((r = 1; r <= RUNS; r++)); do
		log "$load: run $r/$RUNS, smtp-sink"
		c0=$(cpu_ticks "$SINK_PID")
		source_run "$SINK_PORT" "sink-$load-$r" "$@" || { FAILED=1; return; }
		sink_t+=("$T")
		sink_cpu+=($(($(cpu_ticks "$SINK_PID") - c0)))

		log "$load: run $r/$RUNS, gosmtpnull"
		c0=$(cpu_ticks "$GOSMTP_PID")
		source_run "$GOSMTP_PORT" "gosmtpnull-$load-$r" "$@" || { FAILED=1; return; }
		null_t+=("$T")
		null_cpu+=($(($(cpu_ticks "$GOSMTP_PID") - c0)))

		log "$load: run $r/$RUNS, mailgw"
		start_mailgw "$load-$r"
		gw0=$(cpu_ticks "$MAILGW_PID")
		rd0=$(cpu_ticks "$REDIS_PID")
		source_run "$MAILGW_PORT" "mailgw-$load-$r" "$@" || { FAILED=1; stop_mailgw; return; }
		t=$T
		gw_t+=("$t")
		gw_cpu+=($(($(cpu_ticks "$MAILGW_PID") - gw0)))
		rd_cpu+=($(($(cpu_ticks "$REDIS_PID") - rd0)))
		xlen=$(rcli xlen "$STREAM")
		stop_mailgw
		hwm=$HWM
		((hwm > peak)) && peak=$hwm
		if [[ $xlen != "$count" ]]; then
			FAILED=1
			log "$load: run $r: $xlen stream entries for $count messages"
		fi
		streams+="${streams:+,}$xlen"
		log "$load: run $r: smtp-sink ${sink_t[-1]} s, gosmtpnull ${null_t[-1]} s, mailgw ${gw_t[-1]} s, $xlen stream entries, peak RSS $((hwm / 1024)) MB"
	done
	((peak > RSS_MAX_KB)) && RSS_MAX_KB=$peak
	local st nt gt sc nc gc rc
	st=$(median "${sink_t[@]}")
	nt=$(median "${null_t[@]}")
	gt=$(median "${gw_t[@]}")
	sc=$(median "${sink_cpu[@]}")
	nc=$(median "${null_cpu[@]}")
	gc=$(median "${gw_cpu[@]}")
	rc=$(median "${rd_cpu[@]}")
	ROWS+=("$(awk -v load="$load" -v n="$count" -v st="$st" -v nt="$nt" -v gt="$gt" -v sc="$sc" -v nc="$nc" \
		-v gc="$gc" -v rc="$rc" -v hz="$CLK_TCK" -v rss="$peak" -v xl="$streams" 'BEGIN {
		us = 1e6 / hz / n
		printf "%-9s %6d %10.0f %10.0f %10.0f %6.2f %6.2f %8.3f %8.3f %7.0f %7.0f %7.0f %7.0f %7.0f  %s\n",
			load, n, n / st, n / nt, n / gt, st / nt, st / gt, st * 1000 / n, gt * 1000 / n,
			sc * us, nc * us, gc * us, rc * us, rss / 1024, xl }')")
}

for load in $LOADS; do
	case $load in
	reuse) measure reuse "$MESSAGES" -d -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" ;;
	new-conn) measure new-conn "$MESSAGES" -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" ;;
	latency) measure latency "$LATENCY_MESSAGES" -d -s 1 -m "$LATENCY_MESSAGES" -l "$SIZE" ;;
	memory) ;;
	*) die "unknown load '$load' in LOADS" ;;
	esac
done

MEMORY_ROW=""
if [[ " $LOADS " == *" memory "* ]]; then
	log "memory: $BIG_MESSAGES x $BIG_SIZE bytes at once, mailgw"
	start_mailgw memory
	# -A: go on after a 4xx; -v: the replies, counted below.
	if source_run "$MAILGW_PORT" mailgw-memory -A -v -s "$BIG_MESSAGES" -m "$BIG_MESSAGES" -l "$BIG_SIZE"; then
		t=$T
		xlen=$(rcli xlen "$STREAM")
		stop_mailgw
		hwm=$HWM
		((hwm > RSS_MAX_KB)) && RSS_MAX_KB=$hwm
		queued=$(grep -c '<<< 250 2.0.0 OK: queued' "$TMP/source-mailgw-memory.log" || true)
		deferred=$(grep -c '<<< 451 4.3.1' "$TMP/source-mailgw-memory.log" || true)
		other=$((BIG_MESSAGES - queued - deferred))
		if [[ $xlen != "$queued" ]]; then
			FAILED=1
			log "memory: $xlen stream entries for $queued messages answered 'queued'"
		fi
		MEMORY_ROW=$(printf '%d x %d B: %d queued (%d stream entries), %d got 451 4.3.1, %d other; %.1f s; peak RSS %d MB' \
			"$BIG_MESSAGES" "$BIG_SIZE" "$queued" "$xlen" "$deferred" "$other" "$t" $((hwm / 1024)))
	else
		FAILED=1
		stop_mailgw
	fi
fi

# ---------------------------------------------------------------- report

echo
echo "mailgw SMTP benchmark, $(machine)"
echo "smtp-source payload $SIZE B; $SESSIONS sessions for reuse and new-conn; median of $RUNS runs; Redis AOF everysec"
echo "mailgw $COMMIT; load average before: $LOADAVG; mailgw GOMEMLIMIT: ${MAILGW_GOMEMLIMIT:-unset}"
echo
printf '%-9s %6s %10s %10s %10s %6s %6s %8s %8s %7s %7s %7s %7s %7s  %s\n' load msgs sink_msg/s null_msg/s gw_msg/s null_r ratio sink_ms gw_ms sink_us null_us gw_us rd_us rss_MB stream_entries
for row in "${ROWS[@]}"; do
	printf '%s\n' "$row"
done
[[ -n $MEMORY_ROW ]] && printf 'memory    %s\n' "$MEMORY_ROW"
echo
echo "ratio: mailgw msg/s over smtp-sink msg/s. null_r: the same for gosmtpnull (go-smtp with a"
echo "backend that discards everything), the ceiling for any server built on go-smtp. sink_ms, gw_ms:"
echo "wall time per message (for latency, the time one message takes end to end). sink_us, null_us,"
echo "gw_us, rd_us: CPU time (user + system) per message of smtp-sink, gosmtpnull, mailgw and"
echo "redis-server. rss_MB: mailgw's peak resident set (VmHWM) over the runs."

verdict() { if [[ $1 == 1 ]]; then echo met; else echo MISSED; fi; }
for row in "${ROWS[@]}"; do
	read -r load _ _ _ _ _ ratio _ <<<"$row"
	if [[ $load == reuse || $load == new-conn ]]; then
		echo "target: ratio >= $TARGET_RATIO at $SESSIONS sessions ($load): $ratio, $(verdict "$(awk -v r="$ratio" -v t="$TARGET_RATIO" 'BEGIN { print (r >= t) }')")"
	fi
done
echo "target: peak RSS < $TARGET_RSS_MB MB in every run: highest $((RSS_MAX_KB / 1024)) MB, $(verdict $((RSS_MAX_KB / 1024 < TARGET_RSS_MB)))"
finish
