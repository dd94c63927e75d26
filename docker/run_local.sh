#!/usr/bin/env bash
# Run sm_train's image on local folders as SageMaker would: an /opt/ml tree (hyperparameters, channels, checkpoint
# config) mounted into the container, which runs `python -m sm_train train` (or `check`) on it.
#
#   docker/run_local.sh [--image IMAGE] [--root DIR] [--gpus] [--check] [--checkpoints DIR] [-e KEY=VALUE ...] \
#       --channel train=data/train [--channel validation=data/val] -- --model_name_or_path bert-base-uncased --epochs 1
#
# The tree is the one `python -m sm_train local` makes (sm_train/local_tree.py, local_rerun.py), by default under
# ${XDG_CACHE_HOME:-~/.cache}/sm_train/runs/, outside the clone. Run again with the same --root to resume: the tree's
# hyperparameters, channels and checkpoint dir are kept, and what you give replaces only that part (--name null
# removes a hyperparameter, --channel NAME=null a channel). A run starts with empty model and output dirs, as in
# SageMaker; the earlier ones are put back when it writes no model (with its failure file). --check changes no tree.
# Channels are mounted read-only, not copied. --root takes a new or empty folder or a tree marked .sm_train-tree; any
# other folder is refused and left as it is. Hyperparameters are written as the SageMaker API stores them (strings);
# changing those of an existing tree needs python3 on this machine (to merge the JSON), nothing else does.
# The container is named after the tree (sm-train-<tree folder's name>, sm-train-check-... for --check; printed at
# the start): `docker stop NAME` sends it SIGTERM, the job saves a checkpoint and stops, and the same command resumes.
# Its hostname is the tree's host, algo-1, as in SageMaker (script mode's toolkit looks it up).
# -e KEY=VALUE (or -e KEY: the value of KEY here) sets a variable in the container, as docker's -e does; repeat it.
# On a small machine -e OMP_NUM_THREADS=1 (or the cores you give the job) keeps torch from oversubscribing the CPUs:
# with 2 cores shared, its default ran tiny jobs an order of magnitude slower.
# Environment: DOCKER (the docker command; tests set a stand-in), IMAGE (default sm-train), SHM_SIZE (default 2g),
# DOCKER_USER (default: your uid:gid, so the files in the tree are yours; empty: the image's user, root),
# DOCKER_OPTIONS (more `docker run` options, split on spaces and placed after the script's own, so a repeated option
# wins: DOCKER_OPTIONS="--cpus 2 --memory 8g --name my-job"), HF_TOKEN (passed on by name when set).
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
marker_text='{"version": 1, "note": "an /opt/ml tree sm_train made: a run that writes a model replaces model/ and '
marker_text+='output/, checkpoints/ are kept"}'  # the line sm_train/local_tree.py writes

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

linked() {  # where channel link $1 points: the link itself, or the one link in a folder (a file channel)
  local children=("$1"/*)
  if [[ -L $1 ]]; then readlink "$1"; elif [[ ${#children[@]} == 1 && -L ${children[0]} ]]; then readlink "${children[0]}"; fi
}

image=${IMAGE:-sm-train}
root=""
gpus=0
entry=train
checkpoints=""
environment=()  # -e KEY=VALUE / -e KEY, in the order given
declare -A given=()  # channel -> path (null: remove it)
while [[ $# -gt 0 ]]; do
  case $1 in
    --image) image=${2:?--image needs a value}; shift 2 ;;
    --root) root=${2:?--root needs a value}; shift 2 ;;
    --checkpoints) checkpoints=${2:?--checkpoints needs a value}; shift 2 ;;
    --gpus) gpus=1; shift ;;
    --check) entry=check; shift ;;
    -e | --env)
      spec=${2:?$1 needs KEY=VALUE or KEY}
      if [[ ! ${spec%%=*} =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
        echo "$1 $spec: takes KEY=VALUE (or KEY, passing this shell's value), KEY a variable name" >&2
        exit 2
      fi
      environment+=(-e "$spec"); shift 2 ;;
    --channel)
      spec=${2:?--channel needs NAME=PATH}
      name=${spec%%=*}
      [[ $spec == *=* && -n $name && -n ${spec#*=} ]] || { echo "--channel takes NAME=PATH, got $spec" >&2; exit 2; }
      if [[ ! $name =~ ^[A-Za-z0-9_-][A-Za-z0-9._-]*$ ]]; then  # a folder input/data/NAME: not ".", ".." or hidden
        echo "--channel $spec: '$name' is not a channel name; NAME becomes the folder input/data/NAME, so it takes" \
          "letters, digits, '.', '_' and '-' and does not start with '.' (e.g. --channel train=data/train)." >&2
        exit 2
      fi
      if [[ ${spec#*=} == null ]]; then given[$name]=null; shift 2; continue; fi
      [[ -e ${spec#*=} ]] || { echo "--channel $spec: ${spec#*=} does not exist" >&2; exit 2; }
      given[$name]=$(absolute "${spec#*=}"); shift 2 ;;
    --) shift; break ;;
    *) echo "unknown option $1 (hyperparameters go after --)" >&2; usage ;;
  esac
done

# Hyperparameters: --name value, --name=value, or a value-less --flag (true); null removes the key.
pairs=()
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
  pairs+=("$key" "$value")
done

fix="Pass a new or empty folder as --root, or omit --root (a new tree under ~/.cache/sm_train/runs/)."
if [[ -z $root && $entry == train ]]; then
  cache=${XDG_CACHE_HOME:-}
  [[ $cache == /* ]] || cache=$HOME/.cache
  root=$cache/sm_train/runs/$(date +%Y%m%d-%H%M%S)
  stamp=$root n=2
  while [[ -e $root ]]; do root=$stamp-$n; n=$((n + 1)); done  # a tree of the same second exists
fi
if [[ -n $root && -e $root && ! -d $root ]]; then
  echo "--root $(absolute "$root") is a file; the job's tree is a folder. $fix" >&2
  exit 2
fi
if [[ -n $root && -d $root && ! -f $root/$marker ]]; then  # checked before anything is written into it
  mapfile -t found < <(not_a_trees "$root")
  if [[ ${#found[@]} -gt 0 ]]; then
    shown=$(printf '%s, ' "${found[@]:0:3}")
    shown=${shown%, }
    if [[ ${#found[@]} -gt 3 ]]; then shown+=" and more"; fi
    echo "--root $(absolute "$root") is not empty and is not a tree sm_train made (it has no $marker file): found" \
      "$shown. sm_train replaces a tree's model/ and output/ at each run, and it never deletes or overwrites files it" \
      "did not write. $fix" >&2
    exit 2
  fi
fi
existing=0
if [[ -n $root && -f $root/input/config/hyperparameters.json ]]; then existing=1; root=$(absolute "$root"); fi

# What the tree holds: its channels (recorded, or as `local` linked them) and its checkpoint dir outside it.
declare -A channels=()
if [[ $existing == 1 ]]; then
  if [[ -d $root/.sm_train-channels ]]; then
    for path in "$root"/.sm_train-channels/*; do channels[${path##*/}]=$(readlink "$path"); done
  else  # a tree made before the record: its links, and run_local.sh's mount points (their folders unknown)
    for path in "$root"/input/data/*; do channels[${path##*/}]=$(linked "$path"); done
  fi
  if [[ -z $checkpoints && -L $root/.sm_train-checkpoints ]]; then checkpoints=$(readlink "$root/.sm_train-checkpoints"); fi
fi
for name in "${!given[@]}"; do channels[$name]=${given[$name]}; done
names=()
if [[ ${#channels[@]} -gt 0 ]]; then mapfile -t names < <(printf '%s\n' "${!channels[@]}" | sort); fi
for name in "${names[@]}"; do
  if [[ ${channels[$name]} == null ]]; then unset "channels[$name]"; continue; fi
  if [[ -z ${channels[$name]} ]]; then
    echo "the tree $root does not record where channel $name comes from; give it again: --channel $name=PATH" >&2
    exit 2
  fi
done

# Where the job's files are written: the tree, or for --check on an existing tree (or without --root) a temporary
# tree, so that --check changes nothing.
if [[ $entry == check && ( -z $root || $existing == 1 ) ]]; then
  tree=$(mktemp -d "${TMPDIR:-/tmp}/sm_train-check-XXXXXX")
  trap 'rm -rf "$tree"' EXIT
else
  mkdir -p "$root"
  root=$(absolute "$root")
  tree=$root
  if [[ ! -f $root/$marker ]]; then printf '%s\n' "$marker_text" > "$root/$marker"; fi
fi
config=$tree/input/config
mkdir -p "$config" "$tree/input/data" "$tree/model" "$tree/output/data" "$tree/code" "$tree/checkpoints"

if [[ ${#pairs[@]} -gt 0 && $existing == 1 ]]; then  # the saved ones, changed by the given ones
  command -v python3 > /dev/null || { echo "changing a tree's hyperparameters needs python3 (to merge its JSON)" >&2; exit 2; }
  python3 - "$root/input/config/hyperparameters.json" "$config/hyperparameters.json" "${pairs[@]}" << 'EOF'
import json, sys

saved, out, *pairs = sys.argv[1:]
with open(saved, encoding="utf-8") as f:
    hps = json.load(f)
for key, value in zip(pairs[::2], pairs[1::2]):  # a name replaces the one spelt alike (- or _, any case)
    hps = {k: v for k, v in hps.items() if k.replace("-", "_").lower() != key.replace("-", "_").lower()}
    if value != "null":
        hps[key] = value
with open(out, "w", encoding="utf-8") as f:
    f.write(json.dumps(hps, indent=2) + "\n")
EOF
elif [[ $existing == 1 ]]; then
  if [[ $tree != "$root" ]]; then cp "$root/input/config/hyperparameters.json" "$config/hyperparameters.json"; fi
else
  hyperparameters=""
  for ((i = 0; i < ${#pairs[@]}; i += 2)); do
    if [[ ${pairs[i + 1]} == null ]]; then continue; fi
    hyperparameters+="${hyperparameters:+, }$(json_string "${pairs[i]}"): $(json_string "${pairs[i + 1]}")"
  done
  printf '{%s}\n' "$hyperparameters" > "$config/hyperparameters.json"
fi
printf '{"current_host": "algo-1", "hosts": ["algo-1"]}\n' > "$config/resourceconfig.json"
printf '{"LocalPath": "/opt/ml/checkpoints"}\n' > "$config/checkpointconfig.json"

mounts=(-v "$tree:/opt/ml")
data_config=""
for path in "$tree"/input/data/*; do  # earlier mount points and `local`'s links: replaced by this run's channels
  children=("$path"/*)
  if [[ -L $path ]]; then
    rm "$path"
  elif [[ -d $path && ( ${#children[@]} == 0 || -n $(linked "$path") ) ]]; then
    rm -rf "$path"
  else
    echo "$path is not a channel link or mount point sm_train made; use another --root." >&2
    exit 2
  fi
done
if [[ $tree == "$root" ]]; then rm -rf "$root/.sm_train-channels"; mkdir "$root/.sm_train-channels"; fi
for name in "${names[@]}"; do
  if [[ -z ${channels[$name]+set} ]]; then continue; fi
  mkdir -p "$tree/input/data/$name"
  if [[ $tree == "$root" ]]; then ln -s "${channels[$name]}" "$root/.sm_train-channels/$name"; fi
  mounts+=(-v "${channels[$name]}:/opt/ml/input/data/$name:ro")
  data_config+="${data_config:+, }$(json_string "$name"): {\"TrainingInputMode\": \"File\", \"S3DistributionType\": \"FullyReplicated\"}"
done
printf '{%s}\n' "$data_config" > "$config/inputdataconfig.json"
if [[ $tree != "$root" && -n $root ]]; then  # --check: the tree's own model, output and checkpoint dirs
  for name in model output; do if [[ -d $root/$name ]]; then mounts+=(-v "$root/$name:/opt/ml/$name"); fi; done
  checkpoints=${checkpoints:-$root/checkpoints}
fi
if [[ -n $checkpoints && ( $entry == train || -d $checkpoints ) ]]; then
  mkdir -p "$checkpoints"
  checkpoints=$(absolute "$checkpoints")
  if [[ $checkpoints != "$root/checkpoints" || $tree != "$root" ]]; then mounts+=(-v "$checkpoints:/opt/ml/checkpoints"); fi
fi
if [[ $tree == "$root" ]]; then
  rm -f "$root/.sm_train-checkpoints"
  if [[ -n $checkpoints && $checkpoints != "$root/checkpoints" ]]; then ln -s "$checkpoints" "$root/.sm_train-checkpoints"; fi
fi

# A run's model/ and output/ replace the earlier ones only when it writes a model (sm_train/local_rerun.py).
previous=$root/.sm_train-previous
restored=0
settle() {  # $1: 1 when the run counts (it succeeded, or wrote its model)
  if [[ ! -d $previous ]]; then return 0; fi
  local kept=("$previous"/model/* "$previous"/output/data/*)
  local stuck="sm_train: cannot remove files a container wrote as root (sudo rm -rf them)"
  if [[ $1 == 1 ]]; then rm -rf "$previous" 2> /dev/null || echo "$stuck: the earlier run's, in $previous" >&2; return 0; fi
  if [[ -f $root/output/failure ]]; then mv "$root/output/failure" "$previous/failure"; fi
  if ! rm -rf "$root/model" "$root/output" 2> /dev/null; then
    echo "$stuck: this run's, in $root/model and output; the earlier ones are in $previous" >&2
    return 0
  fi
  for name in model output; do if [[ -d $previous/$name ]]; then mv "$previous/$name" "$root/$name"; fi; done
  mkdir -p "$root/model" "$root/output"
  if [[ -f $previous/failure ]]; then mv -f "$previous/failure" "$root/output/failure"; fi
  rm -rf "$previous"
  if [[ ${#kept[@]} -gt 0 ]]; then restored=1; fi
}
wrote_model() { if [[ -f $root/model/all_results.json ]]; then echo 1; else echo 0; fi; }
if [[ $entry == train ]]; then  # as each SageMaker attempt starts; only in a marked tree, and never for --check
  if [[ -d $previous ]]; then settle "$(wrote_model)"; fi  # an earlier run of this script was killed
  mkdir "$previous"
  mv "$root/model" "$root/output" "$previous/"
  mkdir -p "$root/model" "$root/output/data"
fi

# The container's name: the tree's folder name, so `docker stop NAME` finds this run's container.
folder=$(basename "${root:-$tree}")
if [[ $entry == check ]]; then folder=check-${folder#sm_train-check-}; fi
container=sm-train-${folder//[^A-Za-z0-9_.-]/-}
options=(--rm --name "$container" --hostname algo-1 --shm-size "${SHM_SIZE:-2g}")
options+=(-e TRAINING_JOB_NAME="local-$(basename "${root:-$tree}")")
user=${DOCKER_USER-$(id -u):$(id -g)}
if [[ -n $user ]]; then options+=(--user "$user" -e HOME=/tmp); fi
if [[ $gpus == 1 ]]; then options+=(--gpus all); fi
if [[ -n ${HF_TOKEN:-} ]]; then options+=(-e HF_TOKEN); fi
if [[ -t 1 ]]; then options+=(-t); fi  # a terminal: progress bars; otherwise plain log lines
options+=("${environment[@]}")
if [[ -n ${DOCKER_OPTIONS:-} ]]; then
  read -r -a extra <<< "$DOCKER_OPTIONS"
  options+=("${extra[@]}")
fi

stopping=""
if [[ $entry == train ]]; then stopping=" (docker stop $container: it saves a checkpoint and stops)"; fi
echo "sm_train: the job tree is ${root:-$tree}; the container is $container$stopping" >&2
status=0
trap ':' INT TERM HUP  # Ctrl-C reaches the container through docker; this script then still settles the tree
"${DOCKER:-docker}" run "${options[@]}" "${mounts[@]}" "$image" "$entry" || status=$?
if [[ $entry == check ]]; then exit "$status"; fi
if [[ $status == 0 ]]; then settle 1; else settle "$(wrote_model)"; fi
earlier=""
if [[ $restored == 1 ]]; then earlier=" (the earlier run's: this run wrote no model)"; fi
echo "sm_train: exit $status; model: $root/model$earlier, outputs: $root/output/data, checkpoints:" \
  "${checkpoints:-$root/checkpoints}" >&2
if [[ -f $root/output/failure && $status != 0 ]]; then echo "sm_train: failure: $(head -n 1 "$root/output/failure")" >&2; fi
saved=("${checkpoints:-$root/checkpoints}"/checkpoint-*)
if [[ ${#saved[@]} -gt 0 ]]; then again="resumes from its checkpoints"; else again="no checkpoint: starts afresh"; fi
echo "sm_train: run again ($again): docker/run_local.sh --root $root" >&2
exit "$status"
