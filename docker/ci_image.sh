#!/usr/bin/env bash
# Build sm_train's image and run it for real, on a machine like CI's: root, Debian, no engine running, no image
# registry, only the package registries. Called by .ci/run; by hand: sudo bash docker/ci_image.sh.
#
# What it does, each step printing what it checked:
#   1. the engine: Debian's docker.io, debootstrap and iptables (apt-get), dockerd started with its own data root,
#      exec root, socket and pidfile, and --iptables=false --ip-forward=false --ip-masq=false (the host's firewall
#      and sysctls are never touched); a container runs.
#   2. the base: a debootstrap minbase rootfs (python3-venv, CA certificates) imported as an image, then a venv on
#      PATH: the minimal base contract docker/Dockerfile states. The bare rootfs (no `python`) and a system Python
#      (PEP 668) are refused by the Dockerfile's first step, with its message.
#   3. the image: docker/Dockerfile built with BuildKit (Debian's client, DOCKER_BUILDKIT=1) on that base, the CPU
#      torch wheel pip finds on this machine served on loopback; --help, metric-definitions, the installed package
#      and no build leftovers checked. A second image adds SageMaker's training toolkit, as a Deep Learning
#      Container has it (its wheel built here: it has no wheel on PyPI and the base has no compiler).
#   4. jobs, through docker/run_local.sh unless said: a tiny training job (model files, metric lines), a bad column
#      (failure file, exit code 1), check (a good and a bad input), SIGTERM by `docker stop` mid-training then the
#      same command again (it resumes from the checkpoint and finishes), a job run by a non-root user; SageMaker's
#      own `docker run IMAGE train` on a mounted /opt/ml without sagemaker_program (bring your own container);
#      script mode (sagemaker_program set: the image hands over to the toolkit, which runs scripts/train.py), and
#      the same tree where its host does not resolve fails in seconds instead of waiting.
#
# Exit 0 when all passed, 1 when a check failed (the image, the scripts or the package are wrong: the reason and the
# log's end are printed). Exit 0 with "SKIPPED: <check>: <reason>" only where the engine cannot run on this
# machine: not root, no overlay filesystem or cgroups, Debian's packages or mirror unreachable, dockerd does not
# start, or a container cannot start. Everything lives in one work dir under TMPDIR, removed at the end: the
# engine's data, the base rootfs, the wheels, the downloaded packages, the job trees. At the end, also on failure or
# Ctrl-C, nothing is left running: the containers and dockerd (by its pidfile) stopped, the mounts under the work
# dir unmounted, the docker0 link it made deleted, the loopback server stopped.
#
# Environment: TORCH_VERSION (default 2.13.0, the Makefile's: the +cpu wheel is used), TOOLKIT (default
# sagemaker-training==5.1.4, pyproject's dev pin), MIRROR (default: the Debian mirror this machine's apt uses),
# KEEP_WORK=1 (leave the work dir for a look; the engine is stopped all the same), CI_IMAGE_WAIT=FILE (steps 1-3,
# mostly downloads and disk, run at once; the jobs, which want the CPUs, wait until FILE exists: .ci/run starts
# this script beside its installs and the demo, and lets the jobs go once those are done, before its test suite).
set -Eeuo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
started=$SECONDS
step=setup
outcome=""  # ok | skip | fail, once decided
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TOOLKIT=${TOOLKIT:-sagemaker-training==5.1.4}
LAUNCHER=sagemaker-pytorch-training==3.0.0  # the DLCs' launcher module (the Makefile installs the same)
docker=/usr/bin/docker  # Debian's client: the preinstalled one may lack buildx, and then ignores BuildKit
image=sm-train-ci/sm-train
toolkit_image=sm-train-ci/sm-train-toolkit
nonroot=1000  # the uid:gid of the non-root job

say() { printf 'ci_image: %s\n' "$*"; }
long() {  # a long command, in the background: a signal then stops this script at once, and cleanup stops the command
  local status=0
  "$@" &
  child=$!
  wait "$child" || status=$?
  child=""
  return "$status"
}
elapsed() { printf '%ds' $((SECONDS - ${1:-$started})); }
passed() { say "[ok] $step: $* ($(elapsed "$step_started"), at $(elapsed))"; }
begin() { step=$1; step_started=$SECONDS; }
show_log() {  # the end of a log, indented
  if [[ -n ${1:-} && -s $1 ]]; then say "--- the end of $(basename "$1"):"; tail -n "${2:-40}" "$1" | sed 's/^/    /'; fi
}
fail() {  # $1: reason; $2: a log to show
  say "FAILED: $step: $1"
  show_log "${2:-}" "${3:-60}"
  outcome=fail
  exit 1
}
skip() {  # the engine cannot run here: not a failure of the image or the scripts
  say "SKIPPED: $step: $1"
  show_log "${2:-}" 15
  outcome=skip
  exit 0
}

if [[ $(id -u) != 0 ]]; then begin preconditions; skip "not root (installing packages and running dockerd need root)"; fi
work=$(mktemp -d "${TMPDIR:-/tmp}/sm_train-ci-image.XXXXXX")
chmod 711 "$work"  # the non-root job's user reaches the socket and its own folders, nothing else
logs=$work/logs
mkdir -p "$logs" "$work/tmp" "$work/apt/partial" "$work/pip"
export TMPDIR=$work/tmp PIP_CACHE_DIR=$work/pip DOCKER_CONFIG=$work/docker-config
export DOCKER_HOST=unix://$work/engine/docker.sock
had_docker0=0
if ip link show docker0 > /dev/null 2>&1; then had_docker0=1; fi
policy_made=0
server_pid="" job_pid="" wheels_pid="" child=""
# What dockerd 20.10 writes outside its roots, whatever it is told (its trust key; containerd's, runc's and the
# plugins' folders under /run, left empty): removed at the end where they were not there before it started.
host_paths=(/etc/docker/key.json /etc/docker /run/containerd/s /run/containerd /run/docker/plugins /run/docker /run/runc)
made_paths=()

cleanup() {
  local status=$? pid path mounts mount left=0
  cleanup_started=$SECONDS
  exec 1>&3 2>&4  # a signal may come while a step's output goes to its log
  trap - EXIT INT TERM HUP
  for pid in "$child" "$job_pid" "$wheels_pid" "$server_pid"; do
    if [[ -n $pid ]] && kill -0 "$pid" 2> /dev/null; then kill "$pid" 2> /dev/null || true; wait "$pid" 2> /dev/null || true; fi
  done
  if [[ -f $work/engine/dockerd.pid ]]; then
    pid=$(cat "$work/engine/dockerd.pid")
    if [[ -x $docker ]] && kill -0 "$pid" 2> /dev/null; then
      mapfile -t running < <("$docker" ps -q 2> /dev/null)
      if [[ ${#running[@]} -gt 0 ]]; then "$docker" kill "${running[@]}" > /dev/null 2>&1 || true; fi
    fi
    kill "$pid" 2> /dev/null || true
    for _ in $(seq 60); do kill -0 "$pid" 2> /dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2> /dev/null; then say "dockerd ($pid) did not stop in 30 s: killed"; kill -9 "$pid" 2> /dev/null || true; fi
  fi
  # What the engine started and left (containerd, its shims, if dockerd died first): the processes whose command
  # line names this work dir, by their pids.
  for pid in /proc/[0-9]*/cmdline; do
    pid=${pid#/proc/}
    pid=${pid%/cmdline}
    if [[ $pid != "$$" && $({ tr '\0' ' ' < "/proc/$pid/cmdline"; } 2> /dev/null) == *"$work"* ]]; then
      kill -9 "$pid" 2> /dev/null || true
    fi
  done
  # Mounts under the work dir (overlays, the engine's namespaces, debootstrap's /proc), innermost first.
  mapfile -t mounts < <(awk -v w="$work/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r)
  for mount in "${mounts[@]}"; do umount "$mount" 2> /dev/null || umount -l "$mount" 2> /dev/null || true; done
  if awk -v w="$work/" 'index($5, w) == 1 {found = 1} END {exit !found}' /proc/self/mountinfo; then
    say "mounts are left under $work: it is not removed"
    left=1
  fi
  if [[ $had_docker0 == 0 ]] && ip link show docker0 > /dev/null 2>&1; then ip link delete docker0 2> /dev/null || true; fi
  for path in "${made_paths[@]}"; do  # files, then the folders if empty, innermost first
    if [[ -f $path ]]; then rm -f "$path"; elif [[ -d $path ]]; then rmdir "$path" 2> /dev/null || true; fi
  done
  if [[ $policy_made == 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi
  if [[ $left == 0 && ${KEEP_WORK:-} != 1 ]]; then rm -rf --one-file-system "$work" 2> /dev/null || true; fi
  if [[ -z $outcome ]]; then  # an unexpected error (set -e) or a signal
    say "FAILED: $step: stopped with status $status (see the lines above)"
    status=1
  fi
  case $outcome in
    ok) say "all checks passed in $(elapsed) (cleaning up took $(elapsed "$cleanup_started")); nothing left running" ;;
    skip) status=0 ;;
  esac
  exit "$status"
}
exec 3>&1 4>&2
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# --- 1. the engine ----------------------------------------------------------------------------------------------
begin "host"
grep -qw overlay /proc/filesystems || modprobe overlay 2> /dev/null || skip "no overlay filesystem in this kernel"
if [[ ! -d /sys/fs/cgroup || -z $(ls -A /sys/fs/cgroup) ]]; then skip "no cgroup hierarchy at /sys/fs/cgroup"; fi
if pgrep -x dockerd > /dev/null; then
  skip "another Docker engine runs here (pid $(pgrep -x dockerd | head -n 1)): its docker0 bridge would be this one's"
fi
passed "overlay filesystem, cgroups, no other engine"

begin "packages"
packages=(docker.io debootstrap iptables)
missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f '${Status}' "$package" 2> /dev/null | grep -q "ok installed"; then missing+=("$package"); fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
  command -v apt-get > /dev/null || skip "no apt-get: Debian's packages cannot be installed"
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then  # the package's scripts start no engine of their own
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    policy_made=1
  fi
  install=(apt-get install -y --no-install-recommends -o "Dir::Cache::archives=$work/apt" "${missing[@]}")
  if ! DEBIAN_FRONTEND=noninteractive "${install[@]}" > "$logs/apt.log" 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get update >> "$logs/apt.log" 2>&1 || skip "apt-get update failed" "$logs/apt.log"
    DEBIAN_FRONTEND=noninteractive "${install[@]}" >> "$logs/apt.log" 2>&1 ||
      skip "apt-get could not install ${missing[*]}" "$logs/apt.log"
  fi
  if [[ $policy_made == 1 ]]; then rm -f /usr/sbin/policy-rc.d; policy_made=0; fi
  passed "installed ${missing[*]} from Debian"
else
  passed "${packages[*]} already installed"
fi
[[ -x $docker && -x /usr/sbin/dockerd ]] || fail "docker.io is installed but $docker or /usr/sbin/dockerd is missing"

begin "engine"
engine=$work/engine
mkdir -p "$engine" "$DOCKER_CONFIG"
printf '{}\n' > "$engine/daemon.json"  # not /etc/docker/daemon.json: this engine's settings are all given here
for path in "${host_paths[@]}"; do if [[ ! -e $path ]]; then made_paths+=("$path"); fi; done
# Detached from this shell's job control: a Ctrl-C here reaches the engine only through cleanup.
setsid /usr/sbin/dockerd --config-file "$engine/daemon.json" --data-root "$engine/data" --exec-root "$engine/exec" \
  --pidfile "$engine/dockerd.pid" --host "$DOCKER_HOST" --storage-driver overlay2 \
  --iptables=false --ip-forward=false --ip-masq=false > "$logs/dockerd.log" 2>&1 < /dev/null 3>&- 4>&- &
for _ in $(seq 60); do
  if "$docker" info > /dev/null 2>&1; then break; fi
  if ! pgrep -F "$engine/dockerd.pid" > /dev/null 2>&1 && [[ $((SECONDS - step_started)) -gt 5 ]]; then
    skip "dockerd did not start" "$logs/dockerd.log"
  fi
  sleep 0.5
done
"$docker" info > "$logs/info.log" 2>&1 || skip "dockerd did not answer within 30 s" "$logs/dockerd.log"
driver=$("$docker" info --format '{{.Driver}}, cgroup v{{.CgroupVersion}}')
# A container from a two-file image (true and its C library, from this machine): the engine runs containers.
probe=$work/probe
mkdir -p "$probe"
mapfile -t libraries < <(ldd /usr/bin/true | grep -o '/[^ ]*')
tar -C / -chf "$probe/probe.tar" usr/bin/true "${libraries[@]#/}" 2> /dev/null
"$docker" import "$probe/probe.tar" sm-train-ci/probe > /dev/null 2>> "$logs/dockerd.log" ||
  skip "docker import failed" "$logs/dockerd.log"
"$docker" run --rm sm-train-ci/probe /usr/bin/true > "$logs/probe.log" 2>&1 ||
  skip "a container cannot start here" "$logs/probe.log"
passed "dockerd $("$docker" version --format '{{.Server.Version}}') (storage $driver; iptables, ip-forward and" \
  "masquerading off) ran a container"

# The CPU torch wheel and the toolkit's wheels, made while debootstrap downloads (pip's cache stays in the work dir).
wheels=$work/wheels
mkdir -p "$wheels"
(
  python3 -m pip download --no-deps --dest "$wheels" "torch==$TORCH_VERSION+cpu" &&
    python3 -m pip wheel --no-deps --wheel-dir "$wheels" "$TOOLKIT" "$LAUNCHER"
) > "$logs/wheels.log" 2>&1 &
wheels_pid=$!

# --- 2. the base ------------------------------------------------------------------------------------------------
begin "base rootfs"
codename=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2> /dev/null | tr -d '"')
[[ -n $codename ]] || skip "no VERSION_CODENAME in /etc/os-release: not a Debian release debootstrap knows"
mirror=${MIRROR:-}
if [[ -z $mirror ]]; then  # the first source of this release's main component, deb822 or one-line
  mirror=$(cat /etc/apt/sources.list.d/*.sources 2> /dev/null | awk -v suite="$codename" 'BEGIN {RS = ""} {
      uri = ""; ok = 0
      n = split($0, lines, "\n")
      for (i = 1; i <= n; i++) {
        split(lines[i], f, /[ \t]+/)
        if (f[1] == "URIs:") uri = f[2]
        if (f[1] == "Suites:") for (j = 2; j in f; j++) if (f[j] == suite) ok = 1
      }
      if (ok && uri != "") {print uri; exit}
    }')
fi
if [[ -z $mirror ]]; then
  mirror=$(awk -v suite="$codename" '$1 == "deb" && $3 == suite {print $2; exit}' /etc/apt/sources.list 2> /dev/null)
fi
mirror=${mirror:-http://deb.debian.org/debian}
rootfs=$work/rootfs
if ! long debootstrap --variant=minbase --include=python3-venv,ca-certificates "$codename" "$rootfs" "$mirror" \
  > "$logs/debootstrap.log" 2>&1; then
  if grep -q -E "Failed getting release file|Couldn't download|Temporary failure|Could not resolve|Connection" \
    "$logs/debootstrap.log"; then
    skip "debootstrap could not download $codename from $mirror" "$logs/debootstrap.log"
  fi
  fail "debootstrap failed" "$logs/debootstrap.log"
fi
passed "debootstrap --variant=minbase $codename from $mirror, with python3-venv and ca-certificates"

begin "base image"
tar -C "$rootfs" -c . | "$docker" import - sm-train-ci/debian-minbase > /dev/null 2> "$logs/import.log" ||
  fail "docker import of the rootfs failed" "$logs/import.log"
rm -rf --one-file-system "$rootfs"
base=$work/base
mkdir -p "$base/ca"
# Package traffic here is trusted only with this machine's own CA certificates: the base gets them, and pip (which
# otherwise reads its own bundle) the system's.
find /usr/local/share/ca-certificates -name '*.crt' -exec cp {} "$base/ca/" \; 2> /dev/null || true
cat > "$base/Dockerfile" << 'EOF'
FROM sm-train-ci/debian-minbase
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates > /dev/null && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_CERT=/etc/ssl/certs/ca-certificates.crt
EOF
DOCKER_BUILDKIT=1 long "$docker" build --progress plain -t sm-train-ci/base "$base" > "$logs/base.log" 2>&1 ||
  fail "the base image did not build" "$logs/base.log"
version=$("$docker" run --rm --network none sm-train-ci/base python -c 'import sys; print(*sys.version_info[:2], sep=".")' \
  2>> "$logs/base.log") || fail "python does not run in the base image" "$logs/base.log"
passed "sm-train-ci/base: Python $version from a venv on PATH (python, a pip allowed to install)"

begin "base contract"
contract=$work/contract
mkdir -p "$contract"
printf 'FROM sm-train-ci/debian-minbase\nRUN ln -s /usr/bin/python3 /usr/local/bin/python\n' > "$contract/Dockerfile"
DOCKER_BUILDKIT=1 "$docker" build -q -t sm-train-ci/system-python "$contract" > "$logs/contract.log" 2>&1 ||
  fail "the system-Python base did not build" "$logs/contract.log"
for case in "debian-minbase:no 'python' on PATH" "system-python:EXTERNALLY-MANAGED"; do
  if DOCKER_BUILDKIT=1 "$docker" build --progress plain --target base --build-arg "BASE=sm-train-ci/${case%%:*}" \
    -f "$repo/docker/Dockerfile" "$repo" > "$logs/contract.log" 2>&1; then
    fail "docker/Dockerfile accepted sm-train-ci/${case%%:*}, a base outside its contract" "$logs/contract.log"
  fi
  grep -q -F "${case#*:}" "$logs/contract.log" ||
    fail "refusing sm-train-ci/${case%%:*}, docker/Dockerfile did not say '${case#*:}'" "$logs/contract.log"
done
passed "docker/Dockerfile's first step refuses a base without python on PATH and a system Python (PEP 668)"

# --- 3. the image -----------------------------------------------------------------------------------------------
begin "wheels"
wait "$wheels_pid" || fail "pip could not get the CPU torch wheel ($TORCH_VERSION+cpu) or build $TOOLKIT" "$logs/wheels.log"
wheels_pid=""
tag=cp${version/./}
for wheel in "torch-$TORCH_VERSION+cpu-$tag" "sagemaker_training-${TOOLKIT#*==}-$tag"; do
  compgen -G "$wheels/$wheel-*.whl" > /dev/null ||
    fail "no $wheel-*.whl for the base's Python $version in: $(ls "$wheels")" "$logs/wheels.log"
done
python3 -u -m http.server --bind 127.0.0.1 --directory "$wheels" 0 > "$logs/server.log" 2>&1 3>&- 4>&- &
server_pid=$!
port=""
for _ in $(seq 50); do
  port=$(grep -o -E 'port [0-9]+' "$logs/server.log" | head -n 1 | cut -d' ' -f2) || true
  if [[ -n $port ]]; then break; fi
  sleep 0.2
done
[[ -n $port ]] || fail "the loopback wheel server did not start" "$logs/server.log"
links=http://127.0.0.1:$port/
served=("$wheels"/*.whl)
passed "${served[*]##*/} served at $links"

begin "image build"
DOCKER_BUILDKIT=1 long "$docker" build --progress plain --network host -f "$repo/docker/Dockerfile" \
  --build-arg BASE=sm-train-ci/base --build-arg "TORCH=torch==$TORCH_VERSION+cpu --find-links $links" \
  -t "$image" "$repo" > "$logs/build.log" 2>&1 || fail "docker/Dockerfile did not build" "$logs/build.log"
context=$(grep -o -E "transferring context: [0-9.]+[kMG]?B" "$logs/build.log" | tail -n 1 | cut -d' ' -f3)
size=$("$docker" image inspect "$image" --format '{{.Size}}')
passed "BuildKit built $image ($((size / 1000000)) MB) from a ${context:-?} context"

begin "image contents"
run() { "$docker" run --rm --network none "$@"; }
run "$image" --help > "$logs/help.log" 2>&1 || fail "docker run IMAGE --help exited non-zero" "$logs/help.log"
grep -q "usage: python -m sm_train" "$logs/help.log" || fail "--help printed no usage" "$logs/help.log"
run "$image" metric-definitions > "$logs/metrics.log" 2>&1 || fail "metric-definitions exited non-zero" "$logs/metrics.log"
python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d and all({"Name", "Regex"} <= set(m) for m in d)' \
  "$logs/metrics.log" 2> /dev/null || fail "metric-definitions printed no metric definitions" "$logs/metrics.log"
where=$(run --entrypoint python "$image" -c 'import sm_train; print(sm_train.__file__)' 2>&1) ||
  fail "sm_train does not import in the image: $where"
[[ $where == /opt/venv/lib/python*/site-packages/sm_train/__init__.py ]] ||
  fail "python -m sm_train imports $where, not the installed package"
run --entrypoint sh "$image" -c 'find / -xdev \( -name "sm_train*.egg-info" -o -name "sm_train*.whl" -o -path /src \
  -o -path /opt/sm_train -o -path /tmp/sm_train-wheel -o -path "*/build/lib*/sm_train" -o -path "*/build/bdist.*" \
  -o \( -type d -name sm_train ! -path "*/site-packages/*" \) \) -print' \
  > "$logs/leftovers.log" 2>&1 || fail "listing the image's files failed" "$logs/leftovers.log"
[[ ! -s $logs/leftovers.log ]] || fail "build leftovers in the image: $(tr '\n' ' ' < "$logs/leftovers.log")"
extras=$(run --entrypoint python "$image" -c 'import peft, tensorboard; print(peft.__version__)' 2>&1) ||
  fail "the image's default extras (peft, tensorboard) do not import: $extras"
passed "--help, metric-definitions; sm_train imported from $where; peft $extras and tensorboard (the default extras); no egg-info, wheel, build/ or source copy"

begin "toolkit image"
toolkit=$work/toolkit
mkdir -p "$toolkit"
cat > "$toolkit/Dockerfile" << EOF
FROM $image
RUN python -m pip install --no-cache-dir --only-binary sagemaker-training --find-links $links "$TOOLKIT" \\
    && python -m pip install --no-cache-dir --no-deps --find-links $links "$LAUNCHER"
ENV SAGEMAKER_TRAINING_MODULE=sagemaker_pytorch_container.training:main
EOF
DOCKER_BUILDKIT=1 long "$docker" build --progress plain --network host -t "$toolkit_image" "$toolkit" \
  > "$logs/toolkit.log" 2>&1 || fail "the toolkit layer did not build" "$logs/toolkit.log"
passed "$toolkit_image: $image with $TOOLKIT and $LAUNCHER, as a Deep Learning Container has them"
kill "$server_pid" 2> /dev/null || true
wait "$server_pid" 2> /dev/null || true
server_pid=""

# --- 4. jobs ----------------------------------------------------------------------------------------------------
if [[ -n ${CI_IMAGE_WAIT:-} ]]; then
  begin "waiting"
  say "the image is ready; the jobs wait for $CI_IMAGE_WAIT"
  for _ in $(seq 3600); do
    if [[ -e $CI_IMAGE_WAIT ]]; then break; fi
    sleep 1
  done
  [[ -e $CI_IMAGE_WAIT ]] || fail "$CI_IMAGE_WAIT did not appear within an hour"
  passed "$CI_IMAGE_WAIT is there"
fi

begin "tiny inputs"
inputs=$work/inputs
mkdir -p "$inputs"
run --entrypoint python -v "$repo/tests:/src/tests:ro" -v "$inputs:/inputs" -w /src -e OMP_NUM_THREADS=1 "$image" -c '
import csv
from pathlib import Path
from tests import tiny
tiny.build_encoder(Path("/inputs/model"))
Path("/inputs/data").mkdir()
with open("/inputs/data/train.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["text", "label"])
    writer.writerows(tiny.sentences(64))
' > "$logs/inputs.log" 2>&1 || fail "building the tiny model and data in the image failed" "$logs/inputs.log"
chmod -R a+rX "$inputs"
passed "a 2-layer model with its tokenizer and 64 rows of train.csv, made in the image"

export DOCKER=$docker IMAGE=$image DOCKER_USER=""
runs=$work/runs
mkdir -p "$runs"
channels=(--channel "train=$inputs/data" --channel "model=$inputs/model")
local_run() {  # $1: log; the rest: docker/run_local.sh's arguments. Its exit code is left in $rc.
  local log=$1
  shift
  rc=0
  long timeout 900 bash "$repo/docker/run_local.sh" "$@" > "$log" 2>&1 < /dev/null || rc=$?
}
expect() {  # $1: what; $2: a log; then the check's command
  local what=$1 log=$2
  shift 2
  "$@" || fail "$what" "$log"
}
has() { grep -q -F -- "$2" "$1"; }

begin "train"
local_run "$logs/train.log" --root "$runs/train" "${channels[@]}" -e OMP_NUM_THREADS=1 -- --max_steps 3 --logging_steps 1
expect "the job exited $rc" "$logs/train.log" test "$rc" = 0
for file in model.safetensors config.json all_results.json; do
  expect "no $file in the model dir" "$logs/train.log" test -s "$runs/train/model/$file"
done
expect "no metric line" "$logs/train.log" has "$logs/train.log" "[metric] train_loss = "
passed "run_local.sh trained 3 steps: model.safetensors, config.json, all_results.json and [metric] lines"

begin "bad input"
local_run "$logs/bad.log" --root "$runs/bad" "${channels[@]}" -e OMP_NUM_THREADS=1 -- --max_steps 3 --text_column review
expect "a bad column exited $rc, not 1" "$logs/bad.log" test "$rc" = 1
expect "no failure file" "$logs/bad.log" test -s "$runs/bad/output/failure"
expect "the failure file does not name the column" "$logs/bad.log" \
  has "$runs/bad/output/failure" "text_column='review': no such column"
expect "a model dir was written" "$logs/bad.log" test ! -e "$runs/bad/model/model.safetensors"
passed "text_column=review: exit 1, output/failure: $(head -c 100 "$runs/bad/output/failure")"

begin "check"
local_run "$logs/check.log" --check --root "$runs/train" -e OMP_NUM_THREADS=1
expect "check of the trained tree exited $rc" "$logs/check.log" test "$rc" = 0
expect "check printed no [ok] line" "$logs/check.log" has "$logs/check.log" "[ok] "
local_run "$logs/check-bad.log" --check "${channels[@]}" -e OMP_NUM_THREADS=1 -- --text_column review
expect "check of a bad column exited $rc, not 1" "$logs/check-bad.log" test "$rc" = 1
expect "check did not report the column" "$logs/check-bad.log" has "$logs/check-bad.log" "text_column='review'"
passed "exit 0 on the trained tree, exit 1 naming text_column='review' on a bad one"

begin "stop and resume"
stop_run=(--root "$runs/stop" "${channels[@]}" -e OMP_NUM_THREADS=1 -- --max_steps 2000 --logging_steps 50)
bash "$repo/docker/run_local.sh" "${stop_run[@]}" > "$logs/stop.log" 2>&1 < /dev/null &
job_pid=$!
for _ in $(seq 600); do
  if has "$logs/stop.log" "progress: " || ! kill -0 "$job_pid" 2> /dev/null; then break; fi
  sleep 0.5
done
kill -0 "$job_pid" 2> /dev/null || fail "the job ended before it could be stopped" "$logs/stop.log"
has "$logs/stop.log" "progress: " || fail "training did not start within 5 minutes" "$logs/stop.log"
sleep 1
"$docker" stop -t 30 sm-train-stop > /dev/null 2>> "$logs/stop.log" || fail "docker stop sm-train-stop failed" "$logs/stop.log"
rc=0
wait "$job_pid" || rc=$?
job_pid=""
expect "the stopped job exited $rc, not 143 (SIGTERM)" "$logs/stop.log" test "$rc" = 143
saved=("$runs/stop/checkpoints"/checkpoint-*)
expect "no checkpoint saved on SIGTERM" "$logs/stop.log" test -d "${saved[0]}"
newest=$(printf '%s\n' "${saved[@]##*/}" | sort -t- -k2 -n | tail -n 1)
local_run "$logs/resume.log" "${stop_run[@]}"  # the same command again
expect "the rerun exited $rc" "$logs/resume.log" test "$rc" = 0
expect "the rerun did not resume from $newest" "$logs/resume.log" \
  has "$logs/resume.log" "resuming from /opt/ml/checkpoints/$newest"
expect "the rerun wrote no model" "$logs/resume.log" test -s "$runs/stop/model/model.safetensors"
passed "docker stop sm-train-stop: exit 143 with $newest saved; the same command resumed from it and finished"

begin "non-root"
home=$work/home-$nonroot
mkdir -p "$work/bin" "$runs/nonroot" "$home"
cp "$repo/docker/run_local.sh" "$work/bin/"  # this clone may be in a folder only root can read
chmod -R a+rX "$work/bin"
chown "$nonroot:$nonroot" "$runs/nonroot" "$home"
chgrp "$nonroot" "$work/engine/docker.sock" && chmod 660 "$work/engine/docker.sock"
chmod 711 "$work/engine" "$runs"
rc=0
long setpriv --reuid "$nonroot" --regid "$nonroot" --clear-groups env -u DOCKER_USER HOME="$home" TMPDIR="$home" \
  DOCKER_CONFIG="$home/.docker" timeout 900 bash "$work/bin/run_local.sh" --root "$runs/nonroot" "${channels[@]}" \
  -e OMP_NUM_THREADS=1 -- --max_steps 3 > "$logs/nonroot.log" 2>&1 < /dev/null || rc=$?
expect "the job of user $nonroot exited $rc" "$logs/nonroot.log" test "$rc" = 0
expect "no model" "$logs/nonroot.log" test -s "$runs/nonroot/model/model.safetensors"
owner=$(stat -c %u:%g "$runs/nonroot/model/model.safetensors")
expect "the model belongs to $owner, not $nonroot:$nonroot" "$logs/nonroot.log" test "$owner" = "$nonroot:$nonroot"
passed "user $nonroot ran run_local.sh, the container ran as $nonroot:$nonroot and wrote a model that is its own"

begin "bring your own container"
byoc=$work/byoc/ml
mkdir -p "$byoc/input/config" "$byoc/input/data" "$byoc/model" "$byoc/output" "$byoc/code"
cp -r "$inputs/data" "$byoc/input/data/train"  # SageMaker downloads the channels into the tree
cp -r "$inputs/model" "$byoc/input/data/model"
printf '{"max_steps": "3", "logging_steps": "1"}\n' > "$byoc/input/config/hyperparameters.json"
printf '{"train": {"TrainingInputMode": "File"}, "model": {"TrainingInputMode": "File"}}\n' \
  > "$byoc/input/config/inputdataconfig.json"
printf '{"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}\n' \
  > "$byoc/input/config/resourceconfig.json"
rc=0
long timeout 900 "$docker" run --rm --network none -e OMP_NUM_THREADS=1 -v "$byoc:/opt/ml" "$image" train \
  > "$logs/byoc.log" 2>&1 || rc=$?
expect "docker run IMAGE train exited $rc" "$logs/byoc.log" test "$rc" = 0
expect "no model" "$logs/byoc.log" test -s "$byoc/model/model.safetensors"
expect "no metric line" "$logs/byoc.log" has "$logs/byoc.log" "[metric] train_loss = "
passed "docker run IMAGE train, /opt/ml mounted, no network, no sagemaker_program: trained and saved"

begin "script mode"
source_tree() {  # $1: a new tree whose code/ holds the source_dir (as SageMaker's toolkit would find it)
  mkdir -p "$1/code/scripts"
  cp "$repo/scripts/train.py" "$1/code/scripts/"
  cp -r "$repo/sm_train" "$1/code/"
  find "$1/code" -name __pycache__ -prune -exec rm -rf {} +
}
script=(-e OMP_NUM_THREADS=1 -- --max_steps 3 --sagemaker_program scripts/train.py
  --sagemaker_submit_directory /opt/ml/code --sagemaker_job_name sm-train-ci --sagemaker_region us-east-1)
source_tree "$runs/script"
IMAGE=$toolkit_image local_run "$logs/script.log" --root "$runs/script" "${channels[@]}" "${script[@]}"
expect "the script-mode job exited $rc" "$logs/script.log" test "$rc" = 0
expect "the image did not hand over to the toolkit" "$logs/script.log" \
  has "$logs/script.log" "script mode (sagemaker_program=scripts/train.py): SageMaker's training toolkit runs it"
expect "the toolkit did not run scripts/train.py" "$logs/script.log" has "$logs/script.log" "Invoking user script"
expect "no model" "$logs/script.log" test -s "$runs/script/model/model.safetensors"
expect "no metric line" "$logs/script.log" has "$logs/script.log" "[metric] train_loss = "
passed "sagemaker_program set: the image handed over to the toolkit, which ran scripts/train.py; model saved"

begin "script mode, host unresolved"
source_tree "$runs/unresolved"
IMAGE=$toolkit_image DOCKER_OPTIONS="--hostname elsewhere" local_run "$logs/unresolved.log" --root "$runs/unresolved" \
  "${channels[@]}" "${script[@]}"
took=$((SECONDS - step_started))
expect "a tree whose host does not resolve exited $rc, not 1" "$logs/unresolved.log" test "$rc" = 1
expect "it took ${took}s" "$logs/unresolved.log" test "$took" -lt 120
expect "the failure file does not name algo-1" "$logs/unresolved.log" \
  has "$runs/unresolved/output/failure" "'algo-1' does not resolve here"
passed "a script-mode tree whose host algo-1 does not resolve failed in ${took}s, its failure file naming the host"

outcome=ok
