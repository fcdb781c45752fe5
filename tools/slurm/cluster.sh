#!/usr/bin/env bash
# Start and stop a real single-node Slurm cluster on this machine, for
# integration tests and CI (Debian/Ubuntu; Slurm 22.05 + munge measured).
#
# Usage:
#   tools/slurm/cluster.sh install   install slurmctld slurmd slurm-client munge (root + apt-get)
#   tools/slurm/cluster.sh start     install if needed, write the config, start munged,
#                                    slurmctld, slurmd; wait until the node is idle
#   tools/slurm/cluster.sh stop      cancel all jobs, stop slurmd, slurmctld, munged (only
#                                    the pids this script recorded); idempotent
#   tools/slurm/cluster.sh status    print the node state (e.g. "idle"); exit 1 if not up
#   tools/slurm/cluster.sh env       print "export SLURM_CONF=<dir>/slurm.conf"
#
# Clients find the cluster through SLURM_CONF only; nothing is written to
# /etc/slurm. After `start`:   eval "$(tools/slurm/cluster.sh env)"; sbatch ...
#
# Environment (read by start; env/stop/status only need DAE_SLURM_DIR):
#   DAE_SLURM_DIR          state dir: slurm.conf, logs, spool, pids  (/tmp/dae-slurm)
#   DAE_SLURM_CPUS         CPUs the node advertises (config_overrides) (4)
#   DAE_SLURM_MAX_ARRAY    MaxArraySize                               (1001)
#   DAE_SLURM_MIN_JOB_AGE  MinJobAge, seconds a finished job stays in squeue (300)
#   DAE_SLURM_NODE         node name, passed to slurmd -N              (dae0)
#   DAE_SLURM_READY_S      seconds start waits for the node to be idle (30)
# One cluster per machine: ports 6817/6818 and /run/munge are fixed.
# If a cluster started by this script is already running, `start` says so and
# exits 0 without applying new settings (a warning names what differs): run
# `stop` first to change DAE_SLURM_CPUS/MAX_ARRAY/MIN_JOB_AGE.
# Controller state (job id counter) persists in the state dir across restarts;
# delete the dir (cluster stopped) for a clean slate.
#
# Exit codes:
#   0  success (start: cluster up or already up; stop: stopped or was not running)
#   1  status: cluster not up; any other command: unexpected error
#   2  usage error
#   3  Slurm/munge missing and cannot be installed (not root, no apt-get, apt-get failed)
#   4  a daemon failed to start (the message names its log)
#   5  daemons started but the node did not become idle in time (DAE_SLURM_READY_S)
#   6  stop: a daemon did not exit in time (it was sent SIGTERM only; see its log)
#   7  start/stop need root
set -euo pipefail

PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

DIR="${DAE_SLURM_DIR:-/tmp/dae-slurm}"
CONF="$DIR/slurm.conf"
CPUS="${DAE_SLURM_CPUS:-4}"
MAX_ARRAY="${DAE_SLURM_MAX_ARRAY:-1001}"
MIN_JOB_AGE="${DAE_SLURM_MIN_JOB_AGE:-300}"
NODE="${DAE_SLURM_NODE:-dae0}"
READY_S="${DAE_SLURM_READY_S:-30}"
MUNGE_KEY=/etc/munge/munge.key
MUNGE_RUN=/run/munge
PIDS="$DIR/pids"          # pids this script started: $PIDS/<daemon>
LOGS="$DIR/log"
PACKAGES=(slurmctld slurmd slurm-client munge)

export SLURM_CONF="$CONF"

me="cluster.sh"
say() { echo "$me: $*" >&2; }
die() { local code=$1; shift; say "$*"; exit "$code"; }

# Last lines of a log, indented, on stderr.
show_log() {
    local f=$1
    if [[ -s $f ]]; then
        say "--- last lines of $f:"
        tail -n 15 "$f" | sed 's/^/    /' >&2
    fi
}

# --- processes -------------------------------------------------------------

# True if $1 is a live process (not a zombie) whose comm is $2.
alive() {
    local pid=$1 comm=$2 stat state
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    state=${stat##*) }
    state=${state%% *}
    [[ $state != Z && $state != X ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]]
}

recorded_pid() { cat "$PIDS/$1" 2>/dev/null || true; }

# Daemons this script records, in start order; munged is absent from $PIDS
# when a munged that was already running is reused.
DAEMONS=(munged slurmctld slurmd)

# Prints "all" if every recorded daemon is alive and slurmctld/slurmd are
# recorded, "none" if none is alive, "partial" otherwise.
cluster_state() {
    local d pid n_alive=0 n_rec=0
    for d in "${DAEMONS[@]}"; do
        pid=$(recorded_pid "$d")
        [[ -n $pid ]] || continue
        n_rec=$((n_rec + 1))
        if alive "$pid" "$d"; then n_alive=$((n_alive + 1)); fi
    done
    if ((n_alive == 0)); then
        echo none
    elif ((n_alive == n_rec)) && [[ -n $(recorded_pid slurmctld) && -n $(recorded_pid slurmd) ]]; then
        echo all
    else
        echo partial
    fi
}

# Wait up to $3 seconds for pid $1 (comm $2) to exit. Returns 1 on timeout.
wait_exit() {
    local pid=$1 comm=$2 limit=$3 i
    for ((i = 0; i < limit * 10; i++)); do
        alive "$pid" "$comm" || return 0
        sleep 0.1
    done
    return 1
}

# SIGTERM a recorded daemon and wait for it to exit.
stop_daemon() {
    local d=$1 limit=$2 pid
    pid=$(recorded_pid "$d")
    [[ -n $pid ]] || return 0
    if alive "$pid" "$d"; then
        say "stopping $d (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_exit "$pid" "$d" "$limit"; then
            show_log "$(log_of "$d")"
            die 6 "$d (pid $pid) did not exit within ${limit}s of SIGTERM; log: $(log_of "$d")"
        fi
    fi
    rm -f "$PIDS/$d"
}

log_of() {
    case $1 in
        munged) echo "$DIR/munge/munged.log" ;;
        *) echo "$LOGS/$1.log" ;;
    esac
}

# --- install ---------------------------------------------------------------

missing_commands() {
    local c out=()
    for c in slurmctld slurmd sbatch munged; do
        command -v "$c" >/dev/null 2>&1 || out+=("$c")
    done
    echo "${out[*]:-}"
}

cmd_install() {
    local missing
    missing=$(missing_commands)
    if [[ -z $missing ]]; then
        say "slurmctld, slurmd, sbatch, munged already installed"
        return 0
    fi
    [[ $(id -u) -eq 0 ]] || die 3 "missing: $missing; cannot install: not root (run as root, or: apt-get install --no-install-recommends ${PACKAGES[*]})"
    command -v apt-get >/dev/null 2>&1 || die 3 "missing: $missing; cannot install: no apt-get on this machine (install ${PACKAGES[*]} by other means)"
    mkdir -p "$DIR"
    local log="$DIR/install.log"
    say "missing: $missing; installing ${PACKAGES[*]} (log: $log)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >"$log" 2>&1; then
        say "apt-get install failed; running apt-get update and retrying"
        if ! { apt-get update -q && apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"; } >>"$log" 2>&1; then
            show_log "$log"
            die 3 "apt-get install ${PACKAGES[*]} failed; log: $log"
        fi
    fi
    missing=$(missing_commands)
    [[ -z $missing ]] || die 3 "still missing after install: $missing; log: $log"
    say "installed ${PACKAGES[*]}"
}

# --- config ----------------------------------------------------------------

write_conf() {
    local host mem tmp
    host=$(hostname -s)
    mem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n 1)
    [[ -n $mem ]] || mem=1
    tmp="$CONF.tmp.$$"
    cat >"$tmp" <<EOF
# Written by tools/slurm/cluster.sh; rewritten on every start.
ClusterName=dae
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SlurmdParameters=config_overrides
ReturnToService=2
MailProg=/bin/true
MaxArraySize=$MAX_ARRAY
MinJobAge=$MIN_JOB_AGE
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$host CPUs=$CPUS RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    # Report a running cluster whose settings differ from what start would write.
    if [[ ${1:-} == check ]]; then
        if ! cmp -s <(grep -v '^#' "$tmp") <(grep -v '^#' "$CONF" 2>/dev/null); then
            say "warning: the running cluster was started with other settings than now requested" \
                "(run stop, then start, to apply):"
            diff <(grep -v '^#' "$CONF" 2>/dev/null) <(grep -v '^#' "$tmp") | sed -n 's/^[<>]/    &/p' >&2 || true
        fi
        rm -f "$tmp"
        return 0
    fi
    mv "$tmp" "$CONF"
}

# --- munge -----------------------------------------------------------------

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

ensure_munge_key() {
    if [[ -e $MUNGE_KEY ]]; then return 0; fi
    say "creating $MUNGE_KEY"
    install -d -o munge -g munge -m 0700 /etc/munge
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --keyfile="$MUNGE_KEY"
    else
        dd if=/dev/urandom bs=1 count=1024 of="$MUNGE_KEY" status=none
    fi
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"
}

start_munged() {
    if munge_works; then
        say "a munged is already answering on $MUNGE_RUN; using it (it will not be stopped)"
        rm -f "$PIDS/munged"
        return 0
    fi
    ensure_munge_key
    install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
    install -d -o munge -g munge -m 0700 "$DIR/munge"
    local log pidf
    log=$(log_of munged)
    pidf="$DIR/munge/munged.pid"
    rm -f "$pidf"
    say "starting munged (log: $log)"
    if ! runuser -u munge -- munged --log-file="$log" --pid-file="$pidf" \
        </dev/null >"$LOGS/munged.out" 2>&1 9>&-; then
        show_log "$LOGS/munged.out"
        show_log "$log"
        die 4 "munged failed to start; log: $log (stderr: $LOGS/munged.out)"
    fi
    record_pid munged "$pidf" "$log"
    local i
    for ((i = 0; i < 50; i++)); do
        munge_works && return 0
        sleep 0.1
    done
    show_log "$log"
    die 4 "munged started but munge -n | unmunge fails; log: $log"
}

# Wait for the daemon's own pid file, check the pid, copy it to $PIDS.
record_pid() {
    local d=$1 pidf=$2 log=$3 pid="" i
    for ((i = 0; i < 100; i++)); do
        pid=$(cat "$pidf" 2>/dev/null || true)
        if [[ $pid =~ ^[0-9]+$ ]]; then
            if alive "$pid" "$d"; then
                echo "$pid" >"$PIDS/$d"
                return 0
            fi
            # The daemon writes its own pid file, so a dead pid means it died.
            show_log "$LOGS/$d.out"
            show_log "$log"
            die 4 "$d exited right after starting (pid $pid); log: $log"
        fi
        sleep 0.1
    done
    show_log "$LOGS/$d.out"
    show_log "$log"
    die 4 "$d did not come up (no pid in $pidf after 10s); log: $log"
}

start_slurm_daemon() {
    local d=$1; shift
    local log
    log=$(log_of "$d")
    rm -f "$DIR/run/$d.pid"
    say "starting $d (log: $log)"
    if ! "$d" -f "$CONF" "$@" </dev/null >"$LOGS/$d.out" 2>&1 9>&-; then
        show_log "$LOGS/$d.out"
        show_log "$log"
        die 4 "$d failed to start; log: $log (stderr: $LOGS/$d.out)"
    fi
    record_pid "$d" "$DIR/run/$d.pid" "$log"
}

# --- commands --------------------------------------------------------------

node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n 1; }

lock() {
    mkdir -p "$DIR"
    exec 9>"$DIR/lock"
    flock -w 180 9 || die 1 "could not lock $DIR/lock within 180s (another cluster.sh running?)"
}

cmd_start() {
    [[ $(id -u) -eq 0 ]] || die 7 "start needs root (munged runs as user munge, slurmd as root)"
    [[ $CPUS =~ ^[1-9][0-9]*$ ]] || die 2 "DAE_SLURM_CPUS must be a positive integer, got '$CPUS'"
    [[ $MAX_ARRAY =~ ^[1-9][0-9]*$ ]] || die 2 "DAE_SLURM_MAX_ARRAY must be a positive integer, got '$MAX_ARRAY'"
    [[ $MIN_JOB_AGE =~ ^[0-9]+$ ]] || die 2 "DAE_SLURM_MIN_JOB_AGE must be an integer, got '$MIN_JOB_AGE'"
    lock
    local t0=$SECONDS
    case $(cluster_state) in
        all)
            write_conf check
            say "cluster already running (slurmctld pid $(recorded_pid slurmctld), slurmd pid $(recorded_pid slurmd))"
            echo "slurm cluster up: SLURM_CONF=$CONF"
            return 0
            ;;
        partial)
            say "found a partly running cluster in $DIR; stopping what is left first"
            do_stop
            ;;
    esac
    [[ -z $(missing_commands) ]] || cmd_install
    local port
    for port in 6817 6818; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            die 4 "port $port on 127.0.0.1 is already in use (a Slurm daemon not started from $DIR?); not starting"
        fi
    done
    mkdir -p "$DIR"/{state,spool,run} "$LOGS" "$PIDS"
    rm -f "$PIDS"/*
    write_conf
    start_munged
    start_slurm_daemon slurmctld
    start_slurm_daemon slurmd -N "$NODE"
    local state="" d
    while ((SECONDS - t0 <= READY_S)); do
        for d in slurmctld slurmd; do
            if ! alive "$(recorded_pid "$d")" "$d"; then
                show_log "$LOGS/$d.log"
                die 4 "$d exited during start; log: $LOGS/$d.log"
            fi
        done
        state=$(node_state || true)
        if [[ $state =~ ^(idle|mixed|allocated|completing)$ ]]; then
            say "node $NODE $state after $((SECONDS - t0))s"
            echo "slurm cluster up: SLURM_CONF=$CONF"
            return 0
        fi
        sleep 0.2
    done
    show_log "$LOGS/slurmctld.log"
    show_log "$LOGS/slurmd.log"
    die 5 "node $NODE not idle after ${READY_S}s (sinfo says '${state:-nothing}'); logs: $LOGS/slurmctld.log $LOGS/slurmd.log (daemons left running; run stop)"
}

cancel_all_jobs() {
    local ids i
    ids=$(squeue -h -o %A 2>/dev/null | sort -u) || return 0
    [[ -n $ids ]] || return 0
    say "cancelling jobs: ${ids//$'\n'/ }"
    # shellcheck disable=SC2086
    scancel $ids 2>/dev/null || true
    # Wait for job processes to end before slurmd goes (they outlive it).
    for ((i = 0; i < 300; i++)); do
        [[ -z $(squeue -h -t running,completing,suspended,configuring -o %A 2>/dev/null) ]] && return 0
        sleep 0.1
    done
    say "warning: jobs still running/completing 30s after scancel: $(squeue -h -t all -o '%i %T' 2>/dev/null | tr '\n' ' ')"
}

do_stop() {
    local pid
    if alive "$(recorded_pid slurmctld)" slurmctld; then
        cancel_all_jobs
    fi
    stop_daemon slurmd 30
    stop_daemon slurmctld 120  # SIGTERM only, never SIGKILL: it saves job state on exit
    stop_daemon munged 30
    # slurmctld may leave its pid file behind; a stale /run/slurmctld.pid (the
    # packaged default location) breaks later package removal.
    for f in /run/slurmctld.pid "$DIR/run/slurmctld.pid" "$DIR/run/slurmd.pid"; do
        [[ -e $f ]] || continue
        pid=$(cat "$f" 2>/dev/null || true)
        if ! alive "$pid" slurmctld && ! alive "$pid" slurmd; then rm -f "$f"; fi
    done
}

cmd_stop() {
    if [[ $(cluster_state) == none ]]; then
        rm -f "$PIDS"/* 2>/dev/null || true
        [[ -e /run/slurmctld.pid ]] && ! alive "$(cat /run/slurmctld.pid 2>/dev/null)" slurmctld && rm -f /run/slurmctld.pid
        say "no cluster started by this script is running (state dir $DIR)"
        return 0
    fi
    [[ $(id -u) -eq 0 ]] || die 7 "stop needs root (the daemons run as root/munge)"
    lock
    local t0=$SECONDS
    do_stop
    say "slurm cluster stopped after $((SECONDS - t0))s"
}

cmd_status() {
    local st
    if [[ $(cluster_state) != all ]]; then
        say "not running (no live daemons recorded in $PIDS)"
        exit 1
    fi
    st=$(node_state || true)
    if [[ -z $st ]]; then
        say "daemons are alive but sinfo does not answer; logs: $LOGS/slurmctld.log $LOGS/slurmd.log"
        exit 1
    fi
    echo "$st"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
    *) say "usage: $0 install|start|stop|status|env"; exit 2 ;;
esac
