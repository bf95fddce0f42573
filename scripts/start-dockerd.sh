#!/usr/bin/env bash
# Start a Docker Engine (dockerd) on a machine without a running one, as root.
#
#   bash scripts/start-dockerd.sh            start dockerd unless one already answers
#   bash scripts/start-dockerd.sh --verify   then prove it works: build an image FROM scratch,
#                                            run it, publish a port, reach a container by name
#
# With systemd running, it asks systemd (`systemctl start docker`). Otherwise it starts
# dockerd itself in the background (setsid + nohup, log in /var/log/dxflow-dockerd.log) and
# falls back through modes until one comes up AND runs a container:
#   default          no extra flags
#   no-iptables      --iptables=false --ip6tables=false  (kernels/sandboxes without netfilter)
#   vfs              --storage-driver=vfs                (where overlayfs is unusable, e.g. nested)
#   no-iptables-vfs  both
# The mode that worked is written to /var/run/dxflow-dockerd.mode. See
# docs/_notes/docker-in-sandbox.md for what was needed where.
#
# Environment:
#   DXFLOW_DOCKERD_MODES    modes to try, in order (default: "default no-iptables vfs no-iptables-vfs")
#   DXFLOW_DOCKERD_FLAGS    extra flags for every dockerd attempt
#   DXFLOW_DOCKERD_TIMEOUT  seconds to wait for one attempt to answer (default 60)
#   DXFLOW_DOCKERD_LOG      log file (default /var/log/dxflow-dockerd.log)
#   DXFLOW_VERIFY_PORT      host port used by --verify (default 18080)
#   LOG_PREFIX              prefix of progress lines (default "start-dockerd:")
# Exit status: 0 when a daemon answers (and --verify passed), 1 otherwise.
set -euo pipefail

PREFIX="${LOG_PREFIX:-start-dockerd:}"
LOG="${DXFLOW_DOCKERD_LOG:-/var/log/dxflow-dockerd.log}"
TIMEOUT="${DXFLOW_DOCKERD_TIMEOUT:-60}"
MODES="${DXFLOW_DOCKERD_MODES:-default no-iptables vfs no-iptables-vfs}"
EXTRA_FLAGS="${DXFLOW_DOCKERD_FLAGS:-}"
MODE_FILE=/var/run/dxflow-dockerd.mode
SOCK=/var/run/docker.sock
VERIFY=0

say() { echo "$PREFIX $*"; }
warn() { echo "$PREFIX warning: $*" >&2; }
die() { echo "$PREFIX error: $*" >&2; exit 1; }

for arg in "$@"; do
    case "$arg" in
        --verify) VERIFY=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $arg (see --help)" ;;
    esac
done

# Does a Docker daemon answer? Through the CLI when there is one, else on the socket.
docker_ok() {
    if command -v docker >/dev/null 2>&1; then
        timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
    elif command -v curl >/dev/null 2>&1; then
        [ -S "$SOCK" ] && [ "$(curl -fsS -m 5 --unix-socket "$SOCK" http://localhost/_ping 2>/dev/null)" = OK ]
    else
        [ -S "$SOCK" ] && python3 - "$SOCK" <<'EOF' >/dev/null 2>&1
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
data = b""
while chunk := s.recv(4096):
    data += chunk
sys.exit(0 if data.split(b"\r\n", 1)[0].split()[1:2] == [b"200"] else 1)
EOF
    fi
}

# Is this pid a live process? A zombie is not: a dockerd that died stays one until it is
# reaped (by us, for our own children, or by PID 1, which may take its time).
alive() {
    local stat
    [ -n "${1:-}" ] && stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ] && [ "${stat%% *}" != X ]
}

# A static busybox, if this machine has one (Debian's busybox-static): used to run real
# containers without pulling any image.
static_busybox() {
    local b
    for b in /bin/busybox /usr/bin/busybox; do
        # (ldd exits 1 for a static binary: test its output, not the pipeline)
        if [ -x "$b" ] && [[ "$(LC_ALL=C ldd "$b" 2>&1 || true)" == *"not a dynamic executable"* ]]; then
            echo "$b"
            return 0
        fi
    done
    return 1
}

# Run one tiny container (image made with `docker import`, so no registry is needed).
smoke_test() {
    local bb tmp rc=0
    if ! command -v docker >/dev/null 2>&1; then
        say "no docker CLI: skipping the container smoke test"
        return 0
    fi
    if ! bb=$(static_busybox); then
        say "no static busybox (package busybox-static): skipping the container smoke test"
        return 0
    fi
    tmp=$(mktemp -d)
    cp "$bb" "$tmp/busybox"
    if ! tar -C "$tmp" -cf - busybox | docker import - dxflow-smoke:latest >/dev/null 2>"$tmp/err"; then
        cat "$tmp/err" >&2
        rm -rf "$tmp"
        return 1
    fi
    timeout 60 docker run --rm dxflow-smoke:latest /busybox true 2>"$tmp/err" || { rc=$?; cat "$tmp/err" >&2; }
    docker rmi -f dxflow-smoke:latest >/dev/null 2>&1 || true
    rm -rf "$tmp"
    return $rc
}

mode_flags() {
    local ip6=""
    if [[ "$(dockerd --help 2>&1 || true)" == *--ip6tables* ]]; then ip6=" --ip6tables=false"; fi
    case "$1" in
        default) echo "" ;;
        no-iptables) echo "--iptables=false$ip6" ;;
        vfs) echo "--storage-driver=vfs" ;;
        no-iptables-vfs) echo "--iptables=false$ip6 --storage-driver=vfs" ;;
        *) die "unknown dockerd mode '$1' (known: default no-iptables vfs no-iptables-vfs)" ;;
    esac
}

stop_pid() {
    local pid=$1
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        kill -CONT "$pid" 2>/dev/null || true # a stopped process acts on TERM only once resumed
        for _ in $(seq 1 30); do
            alive "$pid" || break
            sleep 0.5
        done
        if alive "$pid"; then
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
        fi
    fi
    wait "$pid" 2>/dev/null || true # reap it when it is our child
}

# Wait until the daemon answers; fail early when the process dies.
wait_up() {
    local pid=$1 deadline=$((SECONDS + TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        docker_ok && return 0
        if [ -n "$pid" ] && ! alive "$pid"; then return 1; fi
        sleep 0.5
    done
    docker_ok
}

verify() {
    command -v docker >/dev/null 2>&1 || die "--verify needs the docker CLI"
    local bb tmp out port="${DXFLOW_VERIFY_PORT:-18080}"
    bb=$(static_busybox) || die "--verify needs a static busybox: apt-get install -y busybox-static"
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064  # expand $tmp now
    trap "docker rm -f dxflow-verify-http dxflow-verify-srv >/dev/null 2>&1 || true
          docker network rm dxflow-verify-net >/dev/null 2>&1 || true
          docker rmi -f dxflow-verify:latest >/dev/null 2>&1 || true
          rm -rf '$tmp'" EXIT
    cp "$bb" "$tmp/busybox"
    mkdir -p "$tmp/www"
    echo dxflow-verify-ok >"$tmp/www/index.html"
    printf 'FROM scratch\nCOPY busybox /busybox\nCOPY www /www\n' >"$tmp/Dockerfile"

    say "verify: docker build (FROM scratch + static busybox)"
    docker build -q -t dxflow-verify:latest "$tmp" >"$tmp/build.log" 2>&1 ||
        { cat "$tmp/build.log" >&2; die "verify: docker build failed"; }

    say "verify: docker run"
    out=$(docker run --rm dxflow-verify:latest /busybox echo hi)
    [ "$out" = hi ] || die "verify: 'docker run ... echo hi' printed '$out'"

    say "verify: published port 127.0.0.1:$port -> 8080"
    docker run -d --name dxflow-verify-http -p "127.0.0.1:$port:8080" dxflow-verify:latest \
        /busybox httpd -f -p 8080 -h /www >/dev/null
    out=""
    for _ in $(seq 1 20); do
        out=$(curl -fsS -m 3 "http://127.0.0.1:$port/" 2>/dev/null ||
            python3 -c "import urllib.request as u; print(u.urlopen('http://127.0.0.1:$port/', timeout=3).read().decode())" 2>/dev/null) || true
        [ "$out" = dxflow-verify-ok ] && break
        sleep 0.5
    done
    [ "$out" = dxflow-verify-ok ] || die "verify: http://127.0.0.1:$port/ is not reachable from the host"

    say "verify: container to container by name on a user-defined network"
    docker network create dxflow-verify-net >/dev/null
    docker run -d --name dxflow-verify-srv --network dxflow-verify-net dxflow-verify:latest \
        /busybox httpd -f -p 8080 -h /www >/dev/null
    local ip
    ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' dxflow-verify-srv)
    fetch_from_container() {
        docker run --rm --network dxflow-verify-net dxflow-verify:latest /busybox sh -c \
            'for i in 1 2 3 4 5 6 7 8 9 10; do
                 printf "GET / HTTP/1.0\r\n\r\n" | /busybox nc -w 3 "$0" 8080 && exit 0
                 /busybox sleep 0.5
             done; exit 1' "$1" 2>&1 | tail -n 3 || true
    }
    out=$(fetch_from_container "$ip")
    [[ "$out" == *dxflow-verify-ok* ]] || die "verify: a container could not reach $ip:8080 on its network ($out)"
    out=$(fetch_from_container dxflow-verify-srv)
    [[ "$out" == *dxflow-verify-ok* ]] ||
        die "verify: containers reach each other by address ($ip) but not by name: Docker's embedded DNS does not work here ($out)"
    say "verify: ok (storage: $(docker info --format '{{.Driver}}' 2>/dev/null), server $(docker version --format '{{.Server.Version}}' 2>/dev/null))"
}

if docker_ok; then
    say "a Docker daemon already answers"
else
    [ "$(id -u)" -eq 0 ] || die "dockerd must be started as root (try: sudo bash $0)"
    case "${DOCKER_HOST:-unix://$SOCK}" in
        unix://"$SOCK" | unix:///run/docker.sock) ;;
        *) die "DOCKER_HOST=$DOCKER_HOST points to another daemon, which does not answer; not starting a local one" ;;
    esac
    command -v dockerd >/dev/null 2>&1 || die "dockerd is not installed (apt-get install -y docker.io)"

    # A dockerd that is still starting (or hung): give it the usual time, then stop it
    # if it is one of ours.
    if [ -f /var/run/docker.pid ] && pid=$(cat /var/run/docker.pid 2>/dev/null) && alive "$pid"; then
        say "dockerd (pid $pid) is running but does not answer yet; waiting up to ${TIMEOUT}s"
        if wait_up "$pid"; then
            say "dockerd answers"
        elif [ -f "$MODE_FILE" ] && grep -qx "pid=$pid" "$MODE_FILE"; then
            warn "dockerd (pid $pid, started by this script) does not answer; stopping it"
            stop_pid "$pid"
        else
            die "dockerd (pid $pid) runs but does not answer; see its log, or stop it and re-run"
        fi
    fi

    # systemd, when it runs the machine
    if ! docker_ok && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 &&
        systemctl cat docker.service >/dev/null 2>&1; then
        say "starting docker with systemd"
        if systemctl start docker && wait_up ""; then
            echo "mode=systemd" >"$MODE_FILE"
        else
            warn "systemctl start docker failed; starting dockerd by hand (journalctl -u docker tells why)"
        fi
    fi

    if ! docker_ok; then
        mkdir -p "$(dirname "$LOG")"
        LOG=$(cd "$(dirname "$LOG")" && pwd)/$(basename "$LOG")
        cd / # the daemon must not keep the caller's directory (a checkout) busy
        ok=0
        for mode in $MODES; do
            flags="$(mode_flags "$mode")${EXTRA_FLAGS:+ $EXTRA_FLAGS}"
            flags="${flags# }"
            say "starting dockerd (mode: $mode${flags:+, flags: $flags}; log: $LOG)"
            # dockerd refuses to start while its pid file names a process that still exists,
            # zombies included: drop a pid file whose process is gone.
            if [ -f /var/run/docker.pid ] && ! alive "$(cat /var/run/docker.pid 2>/dev/null)"; then
                rm -f /var/run/docker.pid
            fi
            printf '\n===== %s dxflow: dockerd %s (mode %s) =====\n' "$(date -u +%FT%TZ)" "$flags" "$mode" >>"$LOG"
            log_start=$(($(stat -c %s "$LOG") + 1))
            # shellcheck disable=SC2086  # flags are words
            setsid nohup dockerd $flags </dev/null >>"$LOG" 2>&1 &
            pid=$!
            if wait_up "$pid"; then
                if smoke_test; then
                    printf 'pid=%s\nmode=%s\nflags=%s\n' "$pid" "$mode" "$flags" >"$MODE_FILE"
                    say "dockerd is up (pid $pid, mode: $mode, storage: $(docker info --format '{{.Driver}}' 2>/dev/null || echo '?'))"
                    ok=1
                    break
                fi
                warn "dockerd came up in mode $mode but could not run a container; trying the next mode"
            else
                warn "dockerd did not come up in mode $mode; last errors:"
                tail -c +"$log_start" "$LOG" | grep -E 'level=(fatal|error)|failed to start daemon' |
                    tail -n 3 | sed "s/^/$PREFIX   /" >&2 || true
            fi
            stop_pid "$pid"
        done
        [ "$ok" = 1 ] || die "no mode brought dockerd up (tried: $MODES); see $LOG"
    fi
fi

if [ "$VERIFY" = 1 ]; then
    verify
fi
