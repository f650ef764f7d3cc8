#!/usr/bin/env bash
# The figures in docs/docker.md: an image's size, and the seconds from `docker run` to the
# first 200 from /readyz with each warm-up mode (`reply`: one reply traces the decoding
# program; `all_shapes`: every batch shape's XLA program is compiled too), RUNS times each,
# the modes alternating so that a change in the machine's load hits both alike. Beside each
# wall time, the CPU seconds the container had used by then (from its cgroup; null where that
# cannot be read): on a busy machine the wall time grows, the CPU time hardly does.
#   scripts/docker-measure.sh [IMAGE [RUNS]]      # defaults: chatbot 3
# Prints one JSON object. Needs curl and a running Docker engine; only loopback is used.
set -euo pipefail
IMAGE="${1:-chatbot}"
RUNS="${2:-3}"

size=$(docker image inspect --format '{{.Size}}' "$IMAGE")

cpu_seconds() {  # container id -> CPU seconds it has used (cgroup v1 or v2), or null
    local cid=$1 file
    for file in "/sys/fs/cgroup/cpuacct/docker/$cid/cpuacct.usage" \
        "/sys/fs/cgroup/cpu,cpuacct/docker/$cid/cpuacct.usage"; do
        if [[ -r $file ]]; then
            awk '{ printf "%.1f\n", $1 / 1e9 }' "$file"
            return
        fi
    done
    for file in "/sys/fs/cgroup/system.slice/docker-$cid.scope/cpu.stat" \
        "/sys/fs/cgroup/docker/$cid/cpu.stat"; do
        if [[ -r $file ]]; then
            awk '$1 == "usage_usec" { printf "%.1f\n", $2 / 1e6 }' "$file"
            return
        fi
    done
    echo null
}

ready_after() {  # mode -> "wall seconds, CPU seconds" from `docker run` to /readyz's first 200
    local mode=$1 start cid address now cpu
    start=$(date +%s.%N)
    cid=$(docker run --detach --pull never --read-only --tmpfs /tmp \
        --publish 127.0.0.1::8000 --env "CHATBOT_WARM_UP=$mode" "$IMAGE")
    address=$(docker port "$cid" 8000/tcp | head -n 1)
    until curl --silent --fail --max-time 2 "http://$address/readyz" >/dev/null; do
        if [[ $(docker inspect --format '{{.State.Running}}' "$cid") != true ]]; then
            docker logs "$cid" >&2
            docker rm --force "$cid" >/dev/null
            return 1
        fi
        sleep 0.1
    done
    now=$(date +%s.%N)
    cpu=$(cpu_seconds "$cid")
    docker rm --force "$cid" >/dev/null
    awk -v a="$start" -v b="$now" -v c="$cpu" 'BEGIN { printf "[%.1f, %s]\n", b - a, c }'
}

reply=() all_shapes=()
for _ in $(seq "$RUNS"); do
    reply+=("$(ready_after reply)")
    all_shapes+=("$(ready_after all_shapes)")
done
join() { local IFS=,; echo "$*"; }
printf '{"image": "%s", "size_bytes": %s, "ready_wall_cpu_s": {"reply": [%s], "all_shapes": [%s]}}\n' \
    "$IMAGE" "$size" "$(join "${reply[@]}")" "$(join "${all_shapes[@]}")"
