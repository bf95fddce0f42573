#!/usr/bin/env bash
# Set up everything dxflow needs; `make run` and `make test` call it first.
#
#   bash scripts/setup.sh [--dev] [--require-docker]
#
#   --dev             install the development extras too (pip -e ".[dev]") and, as root,
#                     curl, openssl, jq, wrk, docker-compose, nginx-light, redis-server,
#                     redis-tools, iproute2, iptables and util-linux (nsenter) for
#                     the network-namespace test bed, slurmctld, slurmd,
#                     slurm-client and munge for the Slurm recipe's test, and
#                     docker-registry for the swarm runtime's registry tests
#   --require-docker  fail when no working Docker Engine can be had (default: warn)
#
# Steps: find Python >= 3.11 ($PYTHON, python3, python3.14 ... python3.11); make .venv;
# pip-install the project (skipped while .venv/.dxflow-stamp matches pyproject.toml and
# the mode); as root, install Debian's busybox-static where no static busybox is (the
# main job and the tests build their images FROM scratch with it); as root, create the
# unprivileged system user `dxflow` (host shells of keys
# that are not MASTER run as it); make sure a Docker Engine answers, installing docker.io
# and starting dockerd as root (scripts/start-dockerd.sh). Safe to re-run: a second run takes well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

DEV=0
REQUIRE_DOCKER=0
for arg in "$@"; do
    case "$arg" in
        --dev) DEV=1 ;;
        --require-docker) REQUIRE_DOCKER=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup: error: unknown argument: $arg (usage: scripts/setup.sh [--dev] [--require-docker])" >&2; exit 2 ;;
    esac
done

say() { echo "setup: $*"; }
warn() { echo "setup: warning: $*" >&2; }
die() { echo "setup: error: $*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

# ---------------------------------------------------------------------------- apt (root)
APT_UPDATED=0
apt_wait() {
    # Another apt/dpkg (e.g. unattended upgrades, or an install still running) holds the
    # lock: wait for it rather than fail.
    local i
    for i in $(seq 1 600); do
        pgrep -x apt-get >/dev/null 2>&1 || pgrep -x apt >/dev/null 2>&1 || pgrep -x dpkg >/dev/null 2>&1 ||
            pgrep -x unattended-upgr >/dev/null 2>&1 || return 0
        [ "$i" = 1 ] && say "waiting for another apt/dpkg to finish"
        sleep 1
    done
}
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* with your package manager"
    apt_wait
    # apt's chatter (debconf, needrestart...) goes to a log, shown only when apt fails
    local log
    log=$(mktemp)
    if [ "$APT_UPDATED" = 0 ]; then
        say "apt-get update"
        apt-get -o DPkg::Lock::Timeout=600 update -q >"$log" 2>&1 ||
            { tail -n 30 "$log" >&2; rm -f "$log"; die "apt-get update failed"; }
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q "$@" >"$log" 2>&1 ||
        { tail -n 30 "$log" >&2; rm -f "$log"; die "apt-get install $* failed"; }
    rm -f "$log"
}
apt_has_candidate() {
    local out
    out=$(apt-cache policy "$1" 2>/dev/null || true)
    [[ "$out" == *"Candidate: "[0-9]* ]]
}

# ---------------------------------------------------------------------------- 1. Python
py_ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1; }
PY=""
for cand in "${PYTHON:-python3}" python3.14 python3.13 python3.12 python3.11; do
    if command -v "$cand" >/dev/null 2>&1 && py_ok "$cand"; then
        PY=$(command -v "$cand")
        break
    fi
    if [ -n "${PYTHON:-}" ] && [ "$cand" = "$PYTHON" ]; then
        warn "PYTHON=$PYTHON is not a Python >= 3.11; looking for another"
    fi
done
[ -n "$PY" ] || die "dxflow needs Python >= 3.11, and none was found (tried \${PYTHON:-python3}, python3.14 ... python3.11).
  Install one (Debian 12: sudo apt-get install -y python3 python3-venv; Ubuntu 22.04: sudo apt-get install -y python3.11 python3.11-venv)
  or point PYTHON at it: PYTHON=/path/to/python3.12 bash scripts/setup.sh"
PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# ---------------------------------------------------------------------------- 2. venv
VENV="$ROOT/.venv"
STAMP="$VENV/.dxflow-stamp"
venv_ok() {
    # usable, made by a Python >= 3.11, and not moved since (its scripts hold absolute paths)
    [ -x "$VENV/bin/python" ] && py_ok "$VENV/bin/python" && [ -x "$VENV/bin/pip" ] &&
        { [ ! -f "$STAMP.path" ] || [ "$(cat "$STAMP.path")" = "$VENV" ]; }
}
make_venv() {
    local err
    if err=$("$PY" -m venv --clear "$VENV" 2>&1); then
        return 0
    fi
    rm -rf "$VENV"
    if "$PY" -c 'import ensurepip' >/dev/null 2>&1; then
        die "could not create $VENV with $PY:
$err"
    fi
    # Debian/Ubuntu ship venv's pip bootstrap (ensurepip) separately.
    local pkgs="python3-venv"
    if is_root && command -v apt-get >/dev/null 2>&1; then
        apt_has_candidate "python$PYVER-venv" && pkgs="$pkgs python$PYVER-venv"
        say "$PY has no ensurepip; installing $pkgs"
        # shellcheck disable=SC2086
        apt_install $pkgs
        err=$("$PY" -m venv --clear "$VENV" 2>&1) || { rm -rf "$VENV"; die "could not create $VENV with $PY even after installing $pkgs:
$err"; }
    else
        die "$PY cannot create a virtual environment: its ensurepip module is missing. Run:
    sudo apt-get install -y python$PYVER-venv     # or python3-venv, for Debian/Ubuntu's default python3
  then run this again."
    fi
}
if ! venv_ok; then
    if [ -e "$VENV" ]; then say "recreating .venv (missing pieces, moved, or made by an older Python)"; else say "creating .venv with $("$PY" -c 'import sys; print(sys.executable)') (Python $PYVER)"; fi
    make_venv
    rm -f "$STAMP"
fi
[ -f "$STAMP.path" ] || echo "$VENV" >"$STAMP.path"

# ---------------------------------------------------------------------------- 3. project
[ -f pyproject.toml ] || die "pyproject.toml not found in $ROOT"
MODE=base
SPEC=(-e .)
if [ "$DEV" = 1 ]; then MODE=dev; SPEC=(-e ".[dev]"); fi
HASH=$(sha256sum pyproject.toml | cut -d' ' -f1)
stamp_current() {
    [ -f "$STAMP" ] || return 1
    local h m
    read -r h m <"$STAMP" || return 1
    # a dev install also satisfies a plain one
    [ "$h" = "$HASH" ] && { [ "$m" = "$MODE" ] || [ "$m" = dev ]; }
}
if stamp_current; then
    say "project already installed in .venv ($(cut -d' ' -f2 "$STAMP") mode, pyproject.toml unchanged)"
else
    say "pip install ${SPEC[*]} (into .venv)"
    rm -f "$STAMP"
    # -qq: only errors (plain -q also prints warnings, e.g. about a pip.conf's missing find-links)
    "$VENV/bin/python" -m pip install -qq --disable-pip-version-check "${SPEC[@]}" ||
        die "pip install ${SPEC[*]} failed (see the errors above)"
    echo "$HASH $MODE" >"$STAMP"
fi

# ---------------------------------------------------------------------------- 4. busybox, dev tools
# The main job (scripts/run.sh) and the Docker tests build their images FROM scratch with
# a static busybox: nothing is pulled from a registry.
if [ -x /bin/busybox ] && [[ "$(LC_ALL=C ldd /bin/busybox 2>&1 || true)" == *"not a dynamic executable"* ]]; then
    : # already a static busybox
elif is_root && command -v apt-get >/dev/null 2>&1; then
    # in a subshell: a failed install is a warning here (the main job then says what to do)
    (apt_install busybox-static) || warn "could not install busybox-static (see above)"
else
    warn "the main job's image and the Docker tests need a static busybox; run: sudo apt-get install -y busybox-static"
fi
if [ "$DEV" = 1 ]; then
    # Tools the test suite drives: the docs' shell examples (curl, openssl, jq), the HTTP
    # benchmark's load generator (wrk), the workflow benchmark's peer (docker-compose) and
    # the file benchmark's peer (nginx, from the package nginx-light).
    missing=()
    for tool in curl openssl jq wrk docker-compose; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
    # The proxies' real-part tests and benchmark: a Redis server behind a TCP proxy,
    # driven by redis-benchmark (Debian's redis-tools).
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    command -v redis-benchmark >/dev/null 2>&1 || missing+=(redis-tools)
    # ... and nginx's TCP proxy (its stream module) as the peer of dxflow's.
    [ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || missing+=(libnginx-mod-stream)
    # The shells' `run` is tested in zsh too, key files with ssh-keygen's own keys.
    command -v zsh >/dev/null 2>&1 || missing+=(zsh)
    command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
    # The multi-host tests' test bed (tests/testbed): network namespaces, veth pairs and
    # faults, made with ip (iproute2), iptables and nsenter (util-linux). /usr/sbin may
    # be missing from a user's PATH.
    has() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
    has ip || missing+=(iproute2)
    has iptables || missing+=(iptables)
    has nsenter || missing+=(util-linux)
    # The HPC recipe's test (tests/integration/test_slurm.py): a real Slurm (slurmctld,
    # slurmd, its clients) authenticated by munge, started by the test on loopback.
    has slurmctld || missing+=(slurmctld)
    has slurmd || missing+=(slurmd)
    command -v sbatch >/dev/null 2>&1 || missing+=(slurm-client)
    { has munged && command -v munge >/dev/null 2>&1; } || missing+=(munge)
    # The swarm runtime's registry tests (tests/swarm/test_registry.py): Debian's
    # docker-registry, run by the test bed inside a node's network namespace.
    [ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
    if [ "${#missing[@]}" -gt 0 ]; then
        if is_root; then
            # RUNLEVEL=1: Debian's nginx, redis-server, munge, slurm and docker-registry
            # would start system services (ports 80, 6379, 5000...); the tests and
            # benchmarks run their own, on loopback or a test bed's namespaces, only
            # while they need them.
            RUNLEVEL=1 apt_install "${missing[@]}"
        else
            warn "the tests need ${missing[*]}; run: sudo apt-get install -y ${missing[*]}"
        fi
    fi
fi

# ---------------------------------------------------------------------------- 5. run-as user
# Host shells of keys that are not MASTER run as an unprivileged OS user (the engine's
# `run_as`, "dxflow" by default; docs/security.md). Where the engine runs as root, make it.
if is_root; then
    if id -u dxflow >/dev/null 2>&1; then
        : # already there
    elif command -v useradd >/dev/null 2>&1; then
        say "creating the system user dxflow (host shells of keys that are not MASTER run as it)"
        useradd --system --user-group --create-home --shell /bin/bash dxflow ||
            warn "useradd dxflow failed: host shells of keys that are not MASTER will be refused"
    else
        warn "no useradd: create an unprivileged user dxflow for the host shells of keys that are not MASTER"
    fi
fi

# ---------------------------------------------------------------------------- 6. Docker
docker_fail() {
    if [ "$REQUIRE_DOCKER" = 1 ]; then die "$1"; else warn "$1 (continuing: only what needs Docker will not work)"; fi
}
docker_check() {
    # Prints the server version, or why it failed (to stdout) and returns 1.
    local out rc=0
    if command -v docker >/dev/null 2>&1; then
        out=$(timeout 10 docker version --format '{{.Server.Version}}' 2>&1) || rc=$?
        if [ "$rc" = 0 ]; then echo "$out"; return 0; fi
        if [ "$rc" = 124 ]; then echo "the Docker daemon did not answer within 10 s"; else echo "$out" | tail -n 1; fi
        return 1
    fi
    # no docker CLI: ask the socket directly
    [ -S /var/run/docker.sock ] || { echo "no docker CLI, and no /var/run/docker.sock"; return 1; }
    "$PY" - <<'EOF' 2>&1 | tail -n 1
import json, socket, sys
try:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect("/var/run/docker.sock")
    s.sendall(b"GET /version HTTP/1.0\r\nHost: docker\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if head.split()[1:2] != [b"200"]:
        sys.exit("/var/run/docker.sock answered: " + head.split(b"\r\n")[0].decode())
    print(json.loads(body)["Version"])
except (OSError, ValueError, KeyError, IndexError) as e:
    sys.exit(f"no answer on /var/run/docker.sock: {e}")
EOF
}
if ver=$(docker_check); then
    say "Docker Engine $ver answers"
elif is_root; then
    if ! command -v dockerd >/dev/null 2>&1; then
        # in a subshell: a failed install is a Docker failure (fatal only with --require-docker)
        (apt_install docker.io) || true
    fi
    if ! command -v dockerd >/dev/null 2>&1; then
        docker_fail "no dockerd: install a Docker Engine (Debian/Ubuntu: apt-get install -y docker.io)"
    elif ver=$(docker_check); then # a package's init script may have started it already
        say "Docker Engine $ver answers"
    elif LOG_PREFIX="setup:" bash "$ROOT/scripts/start-dockerd.sh" && ver=$(docker_check); then
        say "Docker Engine $ver answers"
    else
        docker_fail "could not start a Docker Engine; see /var/log/dxflow-dockerd.log"
    fi
else
    why="$ver"
    steps="    sudo apt-get update && sudo apt-get install -y docker.io
    sudo systemctl start docker      # without systemd: sudo bash scripts/start-dockerd.sh
    sudo usermod -aG docker \"\$USER\"   # then log out and in again (or: newgrp docker)"
    case "$why" in
        *"permission denied"*)
            steps="    sudo usermod -aG docker \"\$USER\"   # then log out and in again (or: newgrp docker)" ;;
    esac
    echo "setup: Docker Engine is not usable by $(id -un): $why
setup: to fix it, run:
$steps" >&2
    docker_fail "no working Docker Engine"
fi

VENV_VER=$(awk -F' *= *' '$1 == "version" || $1 == "version_info" { print $2; exit }' "$VENV/pyvenv.cfg" 2>/dev/null || true)
say "ready (.venv: Python ${VENV_VER:-$PYVER}, $(cut -d' ' -f2 "$STAMP") install)"
