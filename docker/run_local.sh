#!/usr/bin/env bash
# Run sm_train's image on local folders as SageMaker would: an /opt/ml tree (hyperparameters, channels, checkpoint
# config) mounted into the container, which runs `python -m sm_train train` (or `check`) on it.
#
#   docker/run_local.sh [--image IMAGE] [--root DIR] [--gpus] [--check] [--checkpoints DIR] \
#       --channel train=data/train [--channel validation=data/val] -- --model_name_or_path bert-base-uncased --epochs 1
#
# The tree defaults to ./.sm_train/<timestamp>; run again with the same --root to resume from its checkpoints (the
# model and output dirs start empty each run, as in SageMaker; --check empties nothing). Channels are mounted
# read-only, not copied. The tree is marked as sm_train's by .sm_train-tree, as `python -m sm_train local` marks it
# (sm_train/local_tree.py): --root takes a new or empty folder or a marked tree, and any other folder is refused and
# left as it is.
# Hyperparameters are written as the SageMaker API stores them (every value a string; sm_train types them).
# Environment: DOCKER (the docker command; tests set a stand-in), IMAGE (default sm-train), SHM_SIZE (default 2g),
# DOCKER_USER (default: your uid:gid, so the files in the tree are yours; empty: the image's user, root).
set -euo pipefail

shopt -s nullglob dotglob  # a folder's entries, hidden ones included, and none when it is empty

usage() {
  sed -n '5,6p' "$0" | sed 's/^# \{0,3\}//' >&2
  exit 2
}

json_string() {  # $1 as a JSON string
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  s=${s//$'\t'/\\t}
  printf '"%s"' "$s"
}

absolute() {  # an existing path made absolute
  if [[ -d $1 ]]; then (cd "$1" && pwd); else printf '%s/%s' "$(cd "$(dirname "$1")" && pwd)" "$(basename "$1")"; fi
}

marker=.sm_train-tree
marker_text='{"version": 1, "note": "an /opt/ml tree sm_train made: model/ and output/ are emptied at each run, '
marker_text+='checkpoints/ are kept"}'  # the line sm_train/local_tree.py writes

not_a_trees() {  # what unmarked folder $1 holds that a tree of an earlier sm_train would not, one path a line
  # The rule of sm_train/local_tree.py: input/config/*.json, input/data/<channel links or folders of links>,
  # output/failure, and model/ and output/data/ empty or holding the all_results.json a finished run writes.
  local r=$1 path child folder
  for path in "$r"/*; do
    case ${path##*/} in
      input | model | output | code | checkpoints) [[ -d $path && ! -L $path ]] ;;
      *) false ;;
    esac || echo "${path##*/}"
  done
  for path in "$r"/input/*; do
    case ${path##*/} in
      config | data) [[ -d $path && ! -L $path ]] ;;
      *) false ;;
    esac || echo "input/${path##*/}"
  done
  for path in "$r"/output/*; do
    case ${path##*/} in
      failure) [[ -f $path && ! -L $path ]] ;;
      data) [[ -d $path && ! -L $path ]] ;;
      *) false ;;
    esac || echo "output/${path##*/}"
  done
  for path in "$r"/input/config/*; do
    [[ $path == *.json && -f $path && ! -L $path ]] || echo "input/config/${path##*/}"
  done
  for path in "$r"/input/data/*; do
    if [[ -L $path ]]; then continue; fi
    if [[ ! -d $path ]]; then echo "input/data/${path##*/}"; continue; fi
    for child in "$path"/*; do
      if [[ ! -L $child ]]; then echo "input/data/${path##*/}"; break; fi
    done
  done
  for folder in model output/data; do
    if [[ -f $r/$folder/all_results.json ]]; then continue; fi
    for path in "$r/$folder"/*; do echo "$folder/${path##*/}"; done
  done
  return 0
}

image=${IMAGE:-sm-train}
root=""
gpus=0
entry=train
checkpoints=""
channels=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --image) image=${2:?--image needs a value}; shift 2 ;;
    --root) root=${2:?--root needs a value}; shift 2 ;;
    --checkpoints) checkpoints=${2:?--checkpoints needs a value}; shift 2 ;;
    --gpus) gpus=1; shift ;;
    --check) entry=check; shift ;;
    --channel)
      spec=${2:?--channel needs NAME=PATH}
      name=${spec%%=*}
      [[ $spec == *=* && -n $name && -n ${spec#*=} ]] || { echo "--channel takes NAME=PATH, got $spec" >&2; exit 2; }
      if [[ ! $name =~ ^[A-Za-z0-9_-][A-Za-z0-9._-]*$ ]]; then  # a folder input/data/NAME: not ".", ".." or hidden
        echo "--channel $spec: '$name' is not a channel name; NAME becomes the folder input/data/NAME, so it takes" \
          "letters, digits, '.', '_' and '-' and does not start with '.' (e.g. --channel train=data/train)." >&2
        exit 2
      fi
      [[ -e ${spec#*=} ]] || { echo "--channel $spec: ${spec#*=} does not exist" >&2; exit 2; }
      channels+=("$spec"); shift 2 ;;
    --) shift; break ;;
    *) echo "unknown option $1 (hyperparameters go after --)" >&2; usage ;;
  esac
done

# Hyperparameters: --name value, --name=value, or a value-less --flag (true).
hyperparameters=""
while [[ $# -gt 0 ]]; do
  [[ $1 == --* ]] || { echo "unexpected $1: pass --name value (a list as JSON: '[\"a\", \"b\"]')" >&2; exit 2; }
  key=${1#--}
  if [[ $key == *=* ]]; then
    value=${key#*=}; key=${key%%=*}; shift
  elif [[ $# -gt 1 && $2 != --* ]]; then
    value=$2; shift 2
  else
    value=true; shift
  fi
  hyperparameters+="${hyperparameters:+, }$(json_string "$key"): $(json_string "$value")"
done

root=${root:-.sm_train/$(date +%Y%m%d-%H%M%S)}
fix="Pass a new or empty folder as --root, or omit --root (a new tree under ./.sm_train/)."
if [[ -e $root && ! -d $root ]]; then
  echo "--root $(absolute "$root") is a file; the job's tree is a folder. $fix" >&2
  exit 2
fi
if [[ -d $root && ! -f $root/$marker ]]; then  # checked before anything is written into it
  mapfile -t found < <(not_a_trees "$root")
  if [[ ${#found[@]} -gt 0 ]]; then
    shown=$(printf '%s, ' "${found[@]:0:3}")
    shown=${shown%, }
    if [[ ${#found[@]} -gt 3 ]]; then shown+=" and more"; fi
    echo "--root $(absolute "$root") is not empty and is not a tree sm_train made (it has no $marker file): found" \
      "$shown. sm_train empties a tree's model/ and output/ at each run, and it never deletes or overwrites files it" \
      "did not write. $fix" >&2
    exit 2
  fi
fi
mkdir -p "$root/input/config" "$root/input/data" "$root/checkpoints"
root=$(absolute "$root")
if [[ ! -f $root/$marker ]]; then printf '%s\n' "$marker_text" > "$root/$marker"; fi
if [[ $entry == train ]]; then  # as each SageMaker attempt starts; only in a marked tree, and never for --check
  rm -rf "$root/model" "$root/output"
fi
mkdir -p "$root/model" "$root/output/data" "$root/code"

config=$root/input/config
printf '{%s}\n' "$hyperparameters" > "$config/hyperparameters.json"
printf '{"current_host": "algo-1", "hosts": ["algo-1"]}\n' > "$config/resourceconfig.json"
printf '{"LocalPath": "/opt/ml/checkpoints"}\n' > "$config/checkpointconfig.json"

mounts=(-v "$root:/opt/ml")
data_config=""
for spec in "${channels[@]}"; do
  name=${spec%%=*}
  mkdir -p "$root/input/data/$name"
  mounts+=(-v "$(absolute "${spec#*=}"):/opt/ml/input/data/$name:ro")
  data_config+="${data_config:+, }$(json_string "$name"): {\"TrainingInputMode\": \"File\", \"S3DistributionType\": \"FullyReplicated\"}"
done
printf '{%s}\n' "$data_config" > "$config/inputdataconfig.json"
if [[ -n $checkpoints ]]; then
  mkdir -p "$checkpoints"
  mounts+=(-v "$(absolute "$checkpoints"):/opt/ml/checkpoints")
fi

options=(--rm --shm-size "${SHM_SIZE:-2g}" -e TRAINING_JOB_NAME="local-$(basename "$root")")
user=${DOCKER_USER-$(id -u):$(id -g)}
if [[ -n $user ]]; then options+=(--user "$user" -e HOME=/tmp); fi
if [[ $gpus == 1 ]]; then options+=(--gpus all); fi
if [[ -n ${HF_TOKEN:-} ]]; then options+=(-e HF_TOKEN); fi
if [[ -t 1 ]]; then options+=(-t); fi  # a terminal: progress bars; otherwise plain log lines

echo "sm_train: the job tree is $root" >&2
status=0
"${DOCKER:-docker}" run "${options[@]}" "${mounts[@]}" "$image" "$entry" || status=$?
echo "sm_train: exit $status; model: $root/model, outputs: $root/output/data, checkpoints: ${checkpoints:-$root/checkpoints}" >&2
if [[ -f $root/output/failure ]]; then echo "sm_train: failure: $(head -n 1 "$root/output/failure")" >&2; fi
exit "$status"
