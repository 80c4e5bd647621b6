#!/usr/bin/env bash
# Sets this project up on a machine and runs its main job or its tests. Idempotent: each step
# checks first and does nothing when what it installs is already there.
#
#   ./setup.sh run     set up, then launch the quickstart experiment through the daemon
#                      (bazel run //examples/quickstart:launch; flags after `run` go to it)
#   ./setup.sh test    set up, then run every check and test (what CI runs)
#   ./setup.sh setup   set up only
#   ./setup.sh lock    regenerate requirements.lock from requirements.in
#
# Environment: XM_PYTHON picks the Python interpreter (3.11+) for the virtual environment.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$ROOT/.venv"
STATE_DIR="${XM_STATE_DIR:-$HOME/.xmanager}"
CURRENT_STEP="start"
APT_UPDATED=0

step() {
  CURRENT_STEP="$1"
  printf '==> %s\n' "$1"
}
info() { printf '    %s\n' "$*"; }
die() {
  printf '\nsetup.sh: step "%s" failed: %s\n' "$CURRENT_STEP" "$*" >&2
  exit 1
}
trap 'rc=$?; printf "\nsetup.sh: step \"%s\" failed (exit %d); the output above says why.\n" "$CURRENT_STEP" "$rc" >&2' ERR

is_debian() { [[ -f /etc/debian_version ]]; }
is_root() { [[ "$(id -u)" == 0 ]]; }
can_apt() { is_debian && is_root && command -v apt-get >/dev/null; }

apt_install() {
  can_apt || die "need the Debian packages: $* (run as root on Debian, or install them yourself; see docs/install.md)"
  if [[ "$APT_UPDATED" == 0 ]]; then
    info "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  info "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---------------------------------------------------------------------------------------------
# Python: a virtual environment with the locked dependencies and the project in editable mode.
# ---------------------------------------------------------------------------------------------

find_python() {
  local candidate
  for candidate in "${XM_PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [[ -n "$candidate" ]] || continue
    command -v "$candidate" >/dev/null || continue
    if "$candidate" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

ensure_python() {
  step "Python virtual environment (.venv)"
  local python stamp want
  if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c '' 2>/dev/null; then
    python="$(find_python)" || {
      apt_install python3 python3-venv
      python="$(find_python)" || die "no Python 3.11+ with venv found; install one and set XM_PYTHON"
    }
    info "creating .venv with $python"
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
  fi
  want="$(cat "$ROOT/requirements.lock" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
  stamp="$VENV/.xm-installed"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    info "up to date"
    return
  fi
  info "installing the locked dependencies (requirements.lock)"
  "$VENV/bin/python" -m pip install -q --require-hashes -r "$ROOT/requirements.lock"
  info "installing the project in editable mode"
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$ROOT"
  echo "$want" >"$stamp"
}

# ---------------------------------------------------------------------------------------------
# Bazel 7: the one on PATH, else Debian's bazel-bootstrap 7.7.1 from sid, pinned low.
# ---------------------------------------------------------------------------------------------

bazel_major() { bazel --version 2>/dev/null | sed -n 's/^bazel \([0-9]*\)\..*/\1/p'; }

ensure_bazel() {
  step "Bazel 7"
  local major
  major="$(bazel_major || true)"
  if [[ -n "$major" && "$major" -ge 7 ]]; then
    info "$(bazel --version)"
  else
    can_apt || die "Bazel 7 not found and this machine is not Debian with root: install bazelisk, see docs/install.md"
    install_debian_bazel
    major="$(bazel_major || true)"
    [[ -n "$major" && "$major" -ge 7 ]] || die "bazel-bootstrap installed but 'bazel --version' is not 7+; see docs/install.md"
    info "$(bazel --version)"
  fi
  # Bazel's Python toolchain is the machine's CPython 3.11 (the wheels in the lock are cp311).
  local py311
  py311="$(command -v /usr/bin/python3.11 || command -v python3.11 || true)"
  [[ -n "$py311" ]] || { apt_install python3.11 && py311=/usr/bin/python3.11; }
  py311="$("$py311" -c 'import sys; print(sys.executable)')"
  local rc_user="$ROOT/.bazelrc.user"
  local line="common --repo_env=XM_BAZEL_PYTHON=$py311"
  if [[ "$(cat "$rc_user" 2>/dev/null)" != "$line" ]]; then
    echo "$line" >"$rc_user"
    info "Bazel uses $py311 (.bazelrc.user)"
  fi
}

install_debian_bazel() {
  # Debian stable's Bazel is 4.x; sid ships 7.7.1. Use the machine's own mirror, pinned low so
  # that nothing else moves to sid.
  local uri
  uri="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
  [[ -n "$uri" ]] || uri="$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
  [[ -n "$uri" ]] || die "cannot find the Debian mirror in /etc/apt/sources.list.d/debian.sources; see docs/install.md"
  info "adding Debian sid (pinned to priority 100) from $uri"
  cat >/etc/apt/sources.list.d/xmanager-sid.sources <<EOF
Types: deb
URIs: $uri
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  printf 'Package: *\nPin: release n=sid\nPin-Priority: 100\n' >/etc/apt/preferences.d/xmanager-sid
  APT_UPDATED=0
  apt_install_sid_bazel
}

apt_install_sid_bazel() {
  can_apt || die "installing Bazel needs root on Debian"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  APT_UPDATED=1
  info "apt-get install -t sid bazel-bootstrap"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t sid --no-install-recommends bazel-bootstrap >/dev/null; then
    # On bookworm the first try can stop on a file conflict (openssl-provider-legacy vs libssl3).
    info "resolving the interrupted install and retrying"
    DEBIAN_FRONTEND=noninteractive apt-get -f install -y -qq -t sid --no-install-recommends >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t sid --no-install-recommends bazel-bootstrap >/dev/null
  fi
}

# ---------------------------------------------------------------------------------------------
# Services the tests start on demand: their binaries must be installed.
# ---------------------------------------------------------------------------------------------

find_pg_bin() {
  command -v initdb 2>/dev/null && return 0
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [[ -x "$dir/initdb" ]] && { echo "$dir/initdb"; return 0; }
  done
  return 1
}

ensure_test_services() {
  step "Test services (PostgreSQL server, OCI registry, static busybox for test images, skopeo, podman, Chromium)"
  if ! find_pg_bin >/dev/null; then
    apt_install postgresql
  fi
  info "PostgreSQL: $(dirname "$(find_pg_bin)")"
  if ! command -v docker-registry >/dev/null; then
    apt_install docker-registry
  fi
  info "OCI registry: $(command -v docker-registry)"
  # htpasswd (bcrypt) for the registry tests' basic-auth configuration.
  if ! command -v htpasswd >/dev/null; then
    apt_install apache2-utils
  fi
  info "htpasswd: $(command -v htpasswd)"
  # The container tests build their tiny images from it (no registry to pull from).
  if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed"; then
    apt_install busybox-static
  fi
  info "busybox-static: /bin/busybox"
  # The image tests check that skopeo and podman accept image tarballs (no network used).
  if ! command -v skopeo >/dev/null; then
    apt_install skopeo
  fi
  info "skopeo: $(command -v skopeo)"
  if ! command -v podman >/dev/null; then
    apt_install podman
  fi
  info "podman: $(command -v podman)"
  # The dashboard's browser tests drive Debian's Chromium through its chromedriver.
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt_install chromium chromium-driver
  fi
  info "Chromium: $(command -v chromium), $(command -v chromedriver)"
}

# The default base image of xm.python_container outside Bazel: //xm_rules/debian:python_base,
# built by Bazel (reproducibly, from the locked .deb packages) and copied to the client's cache.
ensure_python_base() {
  step "Python base image for xm.python_container"
  local cache="${XM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/xmanager}" built
  mkdir -p "$cache"
  (cd "$ROOT" && bazel build --color=no --curses=no --noshow_progress //xm_rules/debian:python_base) ||
    die "bazel build //xm_rules/debian:python_base failed"
  built="$(cd "$ROOT" && bazel info bazel-bin)/xm_rules/debian/python_base.tar"
  if ! cmp -s "$built" "$cache/python_base.tar"; then
    cp "$built" "$cache/.python_base.tar.tmp"
    chmod 644 "$cache/.python_base.tar.tmp"
    mv "$cache/.python_base.tar.tmp" "$cache/python_base.tar"
  fi
  info "$cache/python_base.tar"
}

ensure_docker() {
  step "Docker Engine"
  if ! command -v dockerd >/dev/null; then
    if can_apt; then
      apt_install docker.io
    else
      info "dockerd not found and this machine is not Debian with root: container jobs will be skipped"
      return
    fi
  fi
  if docker_ready; then
    info "dockerd is running"
    return
  fi
  # Private like everything the daemon keeps there (it refuses a directory others can write).
  mkdir -p -m 700 "$STATE_DIR"
  [[ -e "$STATE_DIR/dockerd.log" ]] || install -m 600 /dev/null "$STATE_DIR/dockerd.log"
  info "starting dockerd (log: $STATE_DIR/dockerd.log)"
  (setsid dockerd >"$STATE_DIR/dockerd.log" 2>&1 &)
  local i
  for i in $(seq 1 60); do
    docker_ready && { info "dockerd is running"; return; }
    sleep 0.5
  done
  die "dockerd did not become ready within 30 s; see $STATE_DIR/dockerd.log"
}

docker_ready() {
  [[ -S /var/run/docker.sock ]] && "$VENV/bin/python" - <<'EOF' 2>/dev/null
import docker
docker.from_env(timeout=2).ping()
EOF
}

# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------

bazel_flags() {
  if [[ "${CI:-}" == "true" ]]; then
    echo "--curses=no --color=no --show_progress_rate_limit=30"
  fi
}

run_tests() {
  local py="$VENV/bin/python"
  cd "$ROOT"
  step "Lint: ruff check"
  "$VENV/bin/ruff" check .
  step "Format: ruff format --check"
  "$VENV/bin/ruff" format --check .
  step "Types: mypy"
  "$VENV/bin/mypy"
  step "Bazel: build and test //... (offline)"
  # shellcheck disable=SC2046
  bazel build $(bazel_flags) //...
  # shellcheck disable=SC2046
  bazel test $(bazel_flags) //...
  step "pytest"
  "$py" -m pytest -p no:cacheprovider --durations=15 "$@"
}

run_main() {
  cd "$ROOT"
  step "Launcher daemon"
  # It runs from the virtual environment; the launch script, built by Bazel, is its client.
  info "$("$VENV/bin/xmanager" daemon start)"
  step "Dashboard (xmanager ui)"
  start_dashboard
  step "Main job: bazel run //examples/quickstart:launch (a sweep through the daemon)"
  # shellcheck disable=SC2046
  bazel run $(bazel_flags) //examples/quickstart:launch -- "$@"
}

# The dashboard runs detached, like the daemon; its one-time login URL is in its log.
start_dashboard() {
  local port="${XM_UI_PORT:-8765}" log="$STATE_DIR/ui.log" pid_file="$STATE_DIR/ui.pid" i
  if [[ -f "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    info "already running: http://127.0.0.1:$port/ (log in with the token in $STATE_DIR/token)"
    return
  fi
  mkdir -p "$STATE_DIR"
  (XM_STATE_DIR="$STATE_DIR" setsid "$VENV/bin/xmanager" ui --port="$port" >"$log" 2>&1 &
    echo $! >"$pid_file")
  for i in $(seq 1 100); do
    if grep -q '^open http' "$log" 2>/dev/null; then
      info "$(grep '^open http' "$log")"
      return
    fi
    kill -0 "$(cat "$pid_file")" 2>/dev/null || break
    sleep 0.1
  done
  info "the dashboard did not start (see $log); the launch goes on without it"
}

lock() {
  step "Lock: requirements.in -> requirements.lock"
  "$VENV/bin/python" -m pip install -q uv
  # Relative paths: uv records its command line in the lock's header.
  (cd "$ROOT" && "$VENV/bin/python" -m uv pip compile --quiet --python-version 3.11 \
    --python-platform x86_64-manylinux_2_28 --generate-hashes --no-emit-index-url \
    --no-emit-find-links -o requirements.lock requirements.in)
}

main() {
  local command="${1:-}"
  shift || true
  case "$command" in
    run)
      ensure_python
      ensure_bazel
      ensure_python_base
      ensure_docker
      run_main "$@"
      ;;
    test)
      ensure_python
      ensure_bazel
      ensure_python_base
      ensure_test_services
      ensure_docker
      run_tests "$@"
      ;;
    setup)
      ensure_python
      ensure_bazel
      ensure_python_base
      ensure_docker
      ;;
    lock)
      ensure_python
      lock
      ;;
    *)
      sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
      exit 2
      ;;
  esac
}

main "$@"
