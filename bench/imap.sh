#!/usr/bin/env bash
# IMAP benchmark: mailgw draining a Dovecot mailbox, against a plain go-imap
# fetch loop reading the same mailbox.
#
# Both read MESSAGES messages of SIZE bytes (headers included, from a known
# customer to the IT space) out of INBOX on a real Dovecot:
#
#   baseline  bench/imapload fetch: log in, SELECT INBOX, UID SEARCH ALL,
#             then UID FETCH BODY.PEEK[] in batches of BATCH UIDs, reading
#             every body to the end and doing nothing with it. Timed from
#             the TCP connect to the last byte.
#   mailgw    `mailgw serve` with one imap: entry on that mailbox (IDLE,
#             batch_size BATCH, processed: Processed): it fetches, parses,
#             decides, writes each message to its space's Redis stream and
#             then moves the batch to Processed. Timed from the start of
#             the process until XLEN of the IT stream reaches MESSAGES
#             (polled with redis-cli every 20 ms); the time until INBOX is
#             empty (the last MOVE done) is shown too.
#
# Before every run the mailbox is emptied and filled again by
# `imapload append` with Message-IDs of its own (mailgw would take repeated
# Message-IDs for duplicates), and before every mailgw run Redis is
# flushed, so every run starts from the same state. Runs alternate
# baseline and mailgw; the table shows the median of RUNS runs.
#
# Redis is a real redis-server with AOF on, fsynced every second, no RDB
# snapshots. Dovecot runs in the foreground from a config written into the
# temporary directory, as internal/dovecottest writes it: IMAP only on
# 127.0.0.1 and a free port, no TLS, one passwd-file user, Maildir.
#
# Run from the repository root:   bench/imap.sh
# Needs: go, redis-server, redis-cli, /usr/sbin/dovecot (Debian packages
# golang, redis-server, dovecot-imapd).
#
# Settings, from the environment (defaults in brackets):
#   MESSAGES     messages per run [5000]
#   SIZE         bytes per message, headers included [4096]
#   BATCH        UIDs per UID FETCH of the baseline, mailgw batch_size [50]
#   SENDERS      known customers the messages come from, taking turns [1];
#                mailgw handles one sender's messages one after another,
#                different senders' messages concurrently (imap[].workers)
#   WORKERS      mailgw imap[].workers [8]
#   RUNS         runs of each; median reported [3]
#   RUN_TIMEOUT  seconds one run may take [600]
#   KEEP         1 keeps the temporary directory (logs, configs) [0]
#   DOVECOT      path of the dovecot binary [/usr/sbin/dovecot]
#
# Exit status: 0 when every run completed with every message in the stream
# once, 1 otherwise. The target is reported, not enforced.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

MESSAGES=${MESSAGES:-5000}
SIZE=${SIZE:-4096}
BATCH=${BATCH:-50}
SENDERS=${SENDERS:-1}
WORKERS=${WORKERS:-8}
RUNS=${RUNS:-3}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
KEEP=${KEEP:-0}
DOVECOT=${DOVECOT:-/usr/sbin/dovecot}

# Target from the project's issue.
TARGET_RATIO=0.6 # mailgw msg/s over baseline msg/s

IMAP_USER=support
IMAP_PASS=secret
STREAM='mailgw:{IT}:requests'

need go redis-server redis-cli timeout awk
[[ -x $DOVECOT ]] || die "$DOVECOT not found (Debian: apt-get install dovecot-imapd)"
whole_numbers MESSAGES SIZE BATCH SENDERS WORKERS RUN_TIMEOUT RUNS
((RUNS >= 1 && MESSAGES >= 1 && BATCH >= 1)) || die "RUNS, MESSAGES and BATCH must be at least 1"

now() { date +%s.%N; }

# ---------------------------------------------------------------- setup

# A short path: Dovecot's UNIX sockets live below it (108-byte limit).
bench_start /tmp/mailgw-imapbench.XXXXXX
build cmd/mailgw bench/imapload
start_redis

# Dovecot, configured as internal/dovecottest does: as root, its own
# processes run as dovecot/dovenull and the mail belongs to nobody; as
# another user, everything runs as that user, without chroots.
IMAP_PORT=$(free_port)
DC=$TMP/dovecot
mkdir -p "$DC/mail" "$DC/run" "$DC/state"
chmod 755 "$DC" "$DC/mail" "$DC/run" "$DC/state"
if [[ $(id -u) == 0 ]]; then
	MAIL_UID=$(id -u nobody)
	MAIL_GID=$(id -g nobody)
	INTERNAL=nobody
	LOGIN=nobody
	id dovecot >/dev/null 2>&1 && INTERNAL=dovecot
	id dovenull >/dev/null 2>&1 && LOGIN=dovenull
	chown "$MAIL_UID:$MAIL_GID" "$DC/mail"
	NONROOT=""
else
	MAIL_UID=$(id -u)
	MAIL_GID=$(id -g)
	INTERNAL=$(id -un)
	LOGIN=$INTERNAL
	NONROOT="default_internal_group = $(id -gn)
service imap-login {
  chroot =
}
service anvil {
  chroot =
}
service auth-worker {
  user = \$default_internal_user
}"
fi
printf '%s:{PLAIN}%s:%s:%s::%s::\n' "$IMAP_USER" "$IMAP_PASS" "$MAIL_UID" "$MAIL_GID" "$DC/mail/$IMAP_USER" >"$DC/passwd"
DOVECOT_VERSION=$("$DOVECOT" --version)
read -r DC_MAJOR DC_MINOR _ <<<"$(tr '.' ' ' <<<"$DOVECOT_VERSION")"
if ((DC_MAJOR > 2 || (DC_MAJOR == 2 && DC_MINOR >= 4))); then
	DC_HEAD="dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0"
	DC_AUTH="auth_allow_cleartext = yes
mail_driver = maildir
mail_path = $DC/mail/%{user}
passdb passwd-file {
  passwd_file_path = $DC/passwd
}
userdb passwd-file {
  passwd_file_path = $DC/passwd
}"
else
	DC_HEAD=""
	DC_AUTH="disable_plaintext_auth = no
mail_location = maildir:$DC/mail/%u
passdb {
  driver = passwd-file
  args = scheme=PLAIN $DC/passwd
}
userdb {
  driver = passwd-file
  args = $DC/passwd
}"
fi
cat >"$DC/dovecot.conf" <<EOF
$DC_HEAD
# Written by mailgw's bench/imap.sh for Dovecot $DOVECOT_VERSION.
protocols = imap
listen = 127.0.0.1
base_dir = $DC/run
state_dir = $DC/state
instance_name = mailgw-imapbench
log_path = $DC/dovecot.log
ssl = no
auth_mechanisms = plain login
first_valid_uid = $MAIL_UID
first_valid_gid = $MAIL_GID
default_internal_user = $INTERNAL
default_login_user = $LOGIN
default_client_limit = 1000
default_process_limit = 500
mail_max_userip_connections = 1000
namespace inbox {
  inbox = yes
  separator = /
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    port = 0
  }
}
$DC_AUTH
$NONROOT
EOF
# In a session of its own, so that its whole process group can be
# cleaned up; setsid does not fork here (a background job of a script is
# no group leader), so $! is Dovecot's master.
if command -v setsid >/dev/null; then
	setsid "$DOVECOT" -F -c "$DC/dovecot.conf" >"$DC/dovecot.out" 2>&1 &
	PGROUPS+=($!)
else
	"$DOVECOT" -F -c "$DC/dovecot.conf" >"$DC/dovecot.out" 2>&1 &
fi
DOVECOT_PID=$!
PIDS+=("$DOVECOT_PID")

imapload() { timeout "$RUN_TIMEOUT" "$TMP/imapload" "$1" -addr "127.0.0.1:$IMAP_PORT" -user "$IMAP_USER" -pass "$IMAP_PASS" "${@:2}"; }

# Ready when the user can log in (Dovecot greets before its auth process
# is up).
for ((i = 0; ; i++)); do
	alive "$DOVECOT_PID" || die "dovecot exited while starting: $(cat "$DC/dovecot.out") $(tail -5 "$DC/dovecot.log" 2>/dev/null)"
	imapload status >/dev/null 2>&1 && break
	((i < 200)) || die "dovecot did not let $IMAP_USER log in within 20 s: $(tail -5 "$DC/dovecot.log")"
	sleep 0.1
done

SMTP_PORT=$(free_port)
HTTP_PORT=$(free_port)
cat >"$TMP/mailgw.yaml" <<EOF
hostname: mx.example.com
redis:
  url: redis://127.0.0.1:$REDIS_PORT/0
smtp:
  listen: 127.0.0.1:$SMTP_PORT
  shutdown_grace: 5s
http:
  listen: 127.0.0.1:$HTTP_PORT
access:
  internal_domains: [example.com]
# $MESSAGES messages from one sender in a few seconds: no rate limits.
rate:
  sender: {count: -1}
  space: {count: -1}
spaces:
  - key: IT
    name: IT help
    addresses: [it@example.com]
    channel_access: open
customers:
$(for ((k = 0; k < SENDERS; k++)); do
	if ((k == 0)); then a=carol; else printf -v a 'customer-%03d' "$k"; fi
	echo "  - {email: $a@example.com, name: Customer $k, type: internal, status: active}"
done)
imap:
  - name: bench
    addr: 127.0.0.1:$IMAP_PORT
    tls: none
    username: $IMAP_USER
    password_env: MAILGW_BENCH_IMAP_PW
    mailbox: INBOX
    address: it@example.com
    processed: Processed
    rejected: Rejected
    idle: true
    poll_interval: 1s
    batch_size: $BATCH
    workers: $WORKERS
EOF

# fill TAG: an empty INBOX (and Processed, Rejected), then MESSAGES new ones.
fill() {
	imapload clear INBOX Processed Rejected >/dev/null
	imapload append -mailbox INBOX -n "$MESSAGES" -size "$SIZE" -tag "$1" -senders "$SENDERS" >>"$TMP/append.log"
	local n
	n=$(imapload status -mailbox INBOX)
	[[ $n == "$MESSAGES" ]] || die "INBOX holds $n messages after appending $MESSAGES"
}

# ---------------------------------------------------------------- runs

BASE_T=()
GW_T=()
GW_EMPTY_T=()
GW_CPU=()
RD_CPU=()
ROWS=()
for ((r = 1; r <= RUNS; r++)); do
	log "run $r/$RUNS: baseline (go-imap fetch loop)"
	fill "base$r-$$"
	out=$(imapload fetch -mailbox INBOX -batch "$BATCH") || die "imapload fetch failed: $out"
	log "  $out"
	t=$(awk '{ for (i = 1; i <= NF; i++) if ($i == "in") { print $(i + 1); exit } }' <<<"$out")
	BASE_T+=("$t")

	log "run $r/$RUNS: mailgw"
	fill "gw$r-$$"
	rcli flushall >/dev/null
	rd0=$(cpu_ticks "$REDIS_PID")
	start=$(now)
	MAILGW_BENCH_IMAP_PW=$IMAP_PASS "$TMP/mailgw" serve --config "$TMP/mailgw.yaml" >>"$TMP/mailgw.out" 2>"$TMP/mailgw-$r.log" &
	MAILGW_PID=$!
	PIDS+=("$MAILGW_PID")
	xl=0
	while :; do
		alive "$MAILGW_PID" || die "mailgw exited: $(tail -5 "$TMP/mailgw-$r.log")"
		xl=$(rcli xlen "$STREAM")
		[[ $xl -ge $MESSAGES ]] && break
		(($(awk -v s="$start" -v e="$(now)" -v l="$RUN_TIMEOUT" 'BEGIN { print (e - s > l) }'))) && break
		sleep 0.02
	done
	end=$(now)
	gw_ticks=$(cpu_ticks "$MAILGW_PID")
	rd_ticks=$(($(cpu_ticks "$REDIS_PID") - rd0))
	if [[ $xl != "$MESSAGES" ]]; then
		FAILED=1
		log "  mailgw: $xl stream entries for $MESSAGES messages after $(elapsed "$start" "$end") s"
	fi
	# The last batch is moved to Processed after its writes.
	for ((i = 0; i < 600; i++)); do
		[[ $(imapload status -mailbox INBOX) == 0 ]] && break
		sleep 0.05
	done
	empty=$(now)
	left=$(imapload status -mailbox INBOX)
	processed=$(imapload status -mailbox Processed)
	stop "$MAILGW_PID"
	forget "$MAILGW_PID"
	if [[ $left != 0 || $processed != "$MESSAGES" ]]; then
		FAILED=1
		log "  mailgw: INBOX still holds $left, Processed $processed of $MESSAGES"
	fi
	unique=$(rcli --raw xrange "$STREAM" - + | awk 'prev == "message_id" { print } { prev = $0 }' | sort -u | wc -l)
	if [[ $unique != "$MESSAGES" ]]; then
		FAILED=1
		log "  mailgw: $unique distinct message_ids in the stream, want $MESSAGES"
	fi
	t=$(elapsed "$start" "$end")
	te=$(elapsed "$start" "$empty")
	GW_T+=("$t")
	GW_EMPTY_T+=("$te")
	GW_CPU+=("$gw_ticks")
	RD_CPU+=("$rd_ticks")
	log "  mailgw: $xl stream entries in $t s ($(awk -v n="$MESSAGES" -v t="$t" 'BEGIN { printf "%.0f", n / t }') msg/s), INBOX empty after $te s"
	ROWS+=("$(awk -v r="$r" -v n="$MESSAGES" -v bt="${BASE_T[-1]}" -v gt="$t" -v ge="$te" -v gc="$gw_ticks" -v rc="$rd_ticks" -v hz="$CLK_TCK" -v u="$unique" 'BEGIN {
		printf "%-4s %6d %12.0f %10.0f %6.2f %13.0f %9.0f %9.0f %8d\n", r, n, n / bt, n / gt, bt / gt, n / ge, gc / hz * 1e6 / n, rc / hz * 1e6 / n, u }')")
done

# ---------------------------------------------------------------- report

bt=$(median "${BASE_T[@]}")
gt=$(median "${GW_T[@]}")
ge=$(median "${GW_EMPTY_T[@]}")
gc=$(median "${GW_CPU[@]}")
rc=$(median "${RD_CPU[@]}")
echo
echo "mailgw IMAP benchmark, $(machine)"
echo "$MESSAGES messages of $SIZE B from $SENDERS sender(s); batches of $BATCH, $WORKERS workers; Dovecot $DOVECOT_VERSION (Maildir); Redis AOF everysec"
echo "mailgw $COMMIT; load average before: $LOADAVG"
echo
printf '%-4s %6s %12s %10s %6s %13s %9s %9s %8s\n' run msgs base_msg/s gw_msg/s ratio gw_empty_msg/s gw_cpu_us rd_cpu_us stream
for row in "${ROWS[@]}"; do
	printf '%s\n' "$row"
done
awk -v n="$MESSAGES" -v bt="$bt" -v gt="$gt" -v ge="$ge" -v gc="$gc" -v rc="$rc" -v hz="$CLK_TCK" 'BEGIN {
	printf "%-4s %6d %12.0f %10.0f %6.2f %13.0f %9.0f %9.0f\n", "med", n, n / bt, n / gt, bt / gt, n / ge, gc / hz * 1e6 / n, rc / hz * 1e6 / n }'
echo
echo "base_msg/s: go-imap fetch loop. gw_msg/s: mailgw, from its start until the stream held every"
echo "message. ratio: gw_msg/s over base_msg/s. gw_empty_msg/s: mailgw until INBOX was empty (last"
echo "MOVE done). gw_cpu_us, rd_cpu_us: CPU time (user + system) of mailgw and redis-server per"
echo "message. stream: distinct message_ids in the stream. med: medians over the runs."
RATIO=$(awk -v bt="$bt" -v gt="$gt" 'BEGIN { printf "%.2f", bt / gt }')
if awk -v r="$RATIO" -v t="$TARGET_RATIO" 'BEGIN { exit !(r >= t) }'; then
	echo "target: ratio >= $TARGET_RATIO: $RATIO, met"
else
	echo "target: ratio >= $TARGET_RATIO: $RATIO, MISSED"
fi
finish
