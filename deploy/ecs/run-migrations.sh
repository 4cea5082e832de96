#!/usr/bin/env bash
# Run migrate-job once as an ECS Fargate task, wait for it to stop, and exit with the container's exit code
# (see deploy/README.md for what each code means to a deploy pipeline). With --shards N: a fleet, as N tasks.
#
# Usage:
#   deploy/ecs/run-migrations.sh --cluster NAME --subnets subnet-a,subnet-b --security-groups sg-1 \
#       [--task-definition migrate-job[:REVISION]|ARN] [--container migrate-job] [--assign-public-ip DISABLED]
#       [--started-by TEXT] [--max-wait SECONDS] [--shards N] [-- COMMAND ARGS...]
#
# Every option can also come from the environment: ECS_CLUSTER, ECS_TASK_DEFINITION, ECS_SUBNETS,
# ECS_SECURITY_GROUPS, ECS_CONTAINER_NAME, ECS_ASSIGN_PUBLIC_IP, ECS_STARTED_BY, ECS_MAX_WAIT_SECONDS (checked
# between `aws ecs wait` calls, which give up after 10 minutes each; ECS_WAIT_RETRY_DELAY seconds apart),
# ECS_SHARDS.
# Arguments after `--` replace the container's command, e.g. `-- migrate --dry-run` or `-- status`.
# In GitHub Actions the outcome is added to the step summary.
#
# --shards N (1..1000): migrate a fleet (`migrate-job fleet`) as N tasks, one per shard: task I runs with the
# container override MIGRATE_FLEET_SHARD=I/N and the command `fleet migrate` (or the one after `--`, e.g.
# `-- fleet migrate --secrets-prefix prod/tenants/ --parallel 8`). All N are started, then waited for; the
# script prints each failed shard's exit code and CloudWatch log stream.
#
# Needs the AWS CLI v2 with credentials allowed to ecs:RunTask, ecs:DescribeTasks, ecs:DescribeTaskDefinition
# and iam:PassRole on the task and execution roles.
#
# Exit status: the container's exit code; 1 when the task stopped without one (it never started: image pull,
# secret injection, capacity, ...), or when it did not stop within --max-wait; 2 for bad usage.
# With --shards: 0 when every shard exited 0; else the failed shards' exit code when they all failed with the
# same one (a shard that never ran counts as 1), 8 when they failed with different codes; 1 after --max-wait.
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
}

die() {
    echo "run-migrations: $*" >&2
    exit 2
}

cluster=${ECS_CLUSTER:-}
task_definition=${ECS_TASK_DEFINITION:-migrate-job}
subnets=${ECS_SUBNETS:-}
security_groups=${ECS_SECURITY_GROUPS:-}
container=${ECS_CONTAINER_NAME:-migrate-job}
assign_public_ip=${ECS_ASSIGN_PUBLIC_IP:-DISABLED}
started_by=${ECS_STARTED_BY:-}
max_wait=${ECS_MAX_WAIT_SECONDS:-3600}
retry_delay=${ECS_WAIT_RETRY_DELAY:-5}
shards=${ECS_SHARDS:-}
command_override=()

while (($#)); do
    case $1 in
        -c | --cluster) cluster=${2:?--cluster needs a value}; shift 2 ;;
        -t | --task-definition) task_definition=${2:?--task-definition needs a value}; shift 2 ;;
        -s | --subnets) subnets=${2:?--subnets needs a value}; shift 2 ;;
        -g | --security-groups) security_groups=${2:?--security-groups needs a value}; shift 2 ;;
        --container) container=${2:?--container needs a value}; shift 2 ;;
        --assign-public-ip) assign_public_ip=${2:?--assign-public-ip needs a value}; shift 2 ;;
        --started-by) started_by=${2:?--started-by needs a value}; shift 2 ;;
        --max-wait) max_wait=${2:?--max-wait needs a value}; shift 2 ;;
        --shards) shards=${2:?--shards needs a value}; shift 2 ;;
        -h | --help) usage ;;
        --) shift; command_override=("$@"); break ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

[[ -n $cluster ]] || die "--cluster (or ECS_CLUSTER) is required"
[[ -n $subnets ]] || die "--subnets (or ECS_SUBNETS) is required"
[[ -n $security_groups ]] || die "--security-groups (or ECS_SECURITY_GROUPS) is required"
[[ $assign_public_ip == ENABLED || $assign_public_ip == DISABLED ]] || die "--assign-public-ip must be ENABLED or DISABLED"
[[ $max_wait =~ ^[0-9]+$ ]] || die "--max-wait must be a number of seconds"
[[ $retry_delay =~ ^[0-9]+$ ]] || die "ECS_WAIT_RETRY_DELAY must be a number of seconds"
if [[ -n $shards ]]; then
    if ! [[ $shards =~ ^[1-9][0-9]{0,3}$ ]] || ((shards > 1000)); then
        die "--shards must be a whole number from 1 to 1000"
    fi
fi
if [[ -z $started_by ]]; then
    if [[ -n ${GITHUB_RUN_ID:-} ]]; then
        started_by="gha-${GITHUB_RUN_ID}"
    else
        started_by="migrate-${USER:-$(id -un 2>/dev/null || echo unknown)}"
    fi
fi
started_by=${started_by:0:128} # ECS limit: 128 characters

# A JSON string literal (the command override is the only JSON built from user input).
json_string() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\t'/\\t}
    s=${s//$'\n'/\\n}
    s=${s//$'\r'/\\r}
    printf '"%s"' "$s"
}

task_id=""
logs_url=""
# Exit with CODE after a line on stderr and, in GitHub Actions, a few lines in the step summary.
finish() {
    local code=$1 message=$2
    echo "run-migrations: ${message}" >&2
    if [[ -n ${GITHUB_STEP_SUMMARY:-} ]]; then
        {
            echo "### ECS migration task ${task_id:-(not started)}: exit code ${code}"
            echo
            echo "${message}"
            [[ -z $logs_url ]] || printf '\n[CloudWatch logs](%s)\n' "$logs_url"
        } >>"$GITHUB_STEP_SUMMARY" || true
    fi
    exit "$code"
}

subnet_list=${subnets//[[:space:]]/}
sg_list=${security_groups//[[:space:]]/}
network="awsvpcConfiguration={subnets=[${subnet_list}],securityGroups=[${sg_list}],assignPublicIp=${assign_public_ip}}"

run_args=(
    ecs run-task
    --cluster "$cluster"
    --task-definition "$task_definition"
    --launch-type FARGATE
    --count 1
    --network-configuration "$network"
    --started-by "$started_by"
    --query '[tasks[0].taskArn, failures[0].arn, failures[0].reason, failures[0].detail]'
    --output text
)

# A JSON array of strings: the container command override.
json_array() {
    local items=() arg
    for arg in "$@"; do
        items+=("$(json_string "$arg")")
    done
    (IFS=,; echo "[${items[*]}]")
}

# The awslogs group and stream prefix of the container (empty when the task definition has none).
log_group=""
log_prefix=""
read_log_config() {
    if read -r log_group log_prefix < <(aws ecs describe-task-definition --task-definition "$task_definition" \
        --query "taskDefinition.containerDefinitions[?name=='${container}'] | [0].logConfiguration.options.[\"awslogs-group\", \"awslogs-stream-prefix\"]" \
        --output text 2>/dev/null); then :; fi
    [[ $log_group != None ]] || log_group=""
    [[ $log_prefix != None ]] || log_prefix=""
}

# The awslogs stream of the container of task ID is <prefix>/<container>/<task id>.
stream_of() {
    if [[ -n $log_prefix ]]; then echo "${log_prefix}/${container}/$1"; else echo "${container}/$1"; fi
}

# The CloudWatch console URL of the log stream of task ID in REGION.
logs_url_of() {
    local region=$1 stream
    stream=$(stream_of "$2")
    echo "https://${region}.console.aws.amazon.com/cloudwatch/home?region=${region}#logsV2:log-groups/log-group/${log_group//\//\$252F}/log-events/${stream//\//\$252F}"
}

# `aws ecs wait tasks-stopped` gives up after 100 polls of 6 s (10 minutes): wait again until the deadline.
# Returns 1 when the deadline passed with a task still running.
wait_for_tasks() {
    local what=$1
    shift
    until aws ecs wait tasks-stopped --cluster "$cluster" --tasks "$@"; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        echo "run-migrations: ${what} still running; waiting again" >&2
        sleep "$retry_delay"
    done
}

if [[ -n $shards ]]; then
    # ------------------------------------------------------------------ a fleet: one task per shard
    ((${#command_override[@]})) || command_override=(fleet migrate)
    command_json=$(json_array "${command_override[@]}")
    shard_arn=()  # task ARN per shard ("" = not started)
    shard_code=() # exit code per shard
    shard_note=() # what happened, per shard
    region=""

    # One table row per shard, then exit with CODE (the step summary in GitHub Actions).
    finish_shards() {
        local code=$1 message=$2 i task stream
        echo "run-migrations: ${message}" >&2
        [[ -n ${GITHUB_STEP_SUMMARY:-} ]] || exit "$code"
        {
            echo "### ECS fleet migration, ${shards} shards: exit code ${code}"
            echo
            echo "${message}"
            echo
            echo "| shard | task | exit code | logs |"
            echo "|---|---|---|---|"
            for ((i = 0; i < shards; i++)); do
                task=${shard_arn[i]:-}
                stream="-"
                if [[ -n $task && -n $log_group ]]; then
                    stream="[$(stream_of "${task##*/}")]($(logs_url_of "$region" "${task##*/}"))"
                fi
                echo "| ${i}/${shards} | ${task##*/} | ${shard_code[i]:-?} | ${stream} |"
            done
        } >>"$GITHUB_STEP_SUMMARY" || true
        exit "$code"
    }

    echo "run-migrations: starting ${shards} shards of ${task_definition} on cluster ${cluster} (started-by ${started_by})" >&2
    started_arns=()
    for ((i = 0; i < shards; i++)); do
        shard_arn[i]=""
        overrides="{\"containerOverrides\":[{\"name\":$(json_string "$container"),\"command\":${command_json},\"environment\":[{\"name\":\"MIGRATE_FLEET_SHARD\",\"value\":\"${i}/${shards}\"}]}]}"
        if ! answer=$(aws "${run_args[@]}" --overrides "$overrides"); then
            shard_code[i]=1
            shard_note[i]="not started: aws ecs run-task failed (see the error above)"
            echo "run-migrations: shard ${i}/${shards}: ${shard_note[i]}" >&2
            continue
        fi
        IFS=$'\t' read -r task_arn failure_arn failure_reason failure_detail <<<"$answer" || true
        if [[ -z ${task_arn:-} || $task_arn == None ]]; then
            shard_code[i]=1
            shard_note[i]="not started: ${failure_reason:-unknown reason} ${failure_arn:-} ${failure_detail:-}"
            echo "run-migrations: shard ${i}/${shards}: ${shard_note[i]}" >&2
            continue
        fi
        shard_arn[i]=$task_arn
        started_arns+=("$task_arn")
        [[ -n $region ]] || region=$(cut -d: -f4 <<<"$task_arn")
        echo "run-migrations: shard ${i}/${shards}: task ${task_arn}" >&2
    done
    if ((${#started_arns[@]} == 0)); then
        finish_shards 1 "no shard was started"
    fi
    read_log_config
    if [[ -n $log_group ]]; then
        echo "run-migrations: logs: group ${log_group}, stream $(stream_of '<task id>') per shard" >&2
    fi

    # DescribeTasks (which the waiter polls) takes at most 100 tasks at a time.
    deadline=$((SECONDS + max_wait))
    for ((b = 0; b < ${#started_arns[@]}; b += 100)); do
        if ! wait_for_tasks "shard tasks" "${started_arns[@]:b:100}"; then
            for arn in "${started_arns[@]}"; do
                echo "run-migrations: stop with: aws ecs stop-task --cluster ${cluster} --task ${arn}" >&2
            done
            finish_shards 1 "shard tasks still not stopped after ${max_wait}s; they keep running (stop them with the aws ecs stop-task commands above)"
        fi
    done

    for ((b = 0; b < ${#started_arns[@]}; b += 100)); do
        while IFS=$'\t' read -r arn last_status stop_code exit_code container_reason stopped_reason; do
            for ((i = 0; i < shards; i++)); do
                [[ ${shard_arn[i]} == "$arn" ]] || continue
                if [[ ${exit_code:-None} =~ ^[0-9]+$ ]]; then
                    shard_code[i]=$exit_code
                    shard_note[i]="container ${container} exited with code ${exit_code}"
                else
                    shard_code[i]=1
                    shard_note[i]="container ${container} has no exit code (it did not run): ${container_reason:-None}; ${stopped_reason:-None} (${last_status:-UNKNOWN}, stopCode ${stop_code:-None})"
                fi
            done
        done < <(
            aws ecs describe-tasks --cluster "$cluster" --tasks "${started_arns[@]:b:100}" \
                --query "tasks[].[taskArn, lastStatus, stopCode, containers[?name=='${container}'] | [0].exitCode, containers[?name=='${container}'] | [0].reason, stoppedReason]" \
                --output text || true
        )
    done

    failed=0
    code=""
    for ((i = 0; i < shards; i++)); do
        if [[ -n ${shard_arn[i]} && -z ${shard_code[i]:-} ]]; then
            shard_code[i]=1
            shard_note[i]="no status from aws ecs describe-tasks"
        fi
        ((shard_code[i] != 0)) || continue
        failed=$((failed + 1))
        if [[ -z $code ]]; then
            code=${shard_code[i]}
        elif [[ $code != "${shard_code[i]}" ]]; then
            code=8
        fi
        where=""
        if [[ -n ${shard_arn[i]} ]]; then
            where=" (task ${shard_arn[i]##*/})"
            [[ -z $log_group ]] || where+="; logs: group ${log_group} stream $(stream_of "${shard_arn[i]##*/}")"
        fi
        echo "run-migrations: shard ${i}/${shards} failed with exit code ${shard_code[i]}: ${shard_note[i]}${where}" >&2
    done
    if ((failed == 0)); then
        finish_shards 0 "all ${shards} shards exited with code 0"
    fi
    finish_shards "$code" "${failed} of ${shards} shards failed (exit code ${code}; each failed shard's code and log stream are above)"
fi

# ---------------------------------------------------------------------- one task
if ((${#command_override[@]})); then
    run_args+=(--overrides "{\"containerOverrides\":[{\"name\":$(json_string "$container"),\"command\":$(json_array "${command_override[@]}")}]}")
fi

echo "run-migrations: starting ${task_definition} on cluster ${cluster} (started-by ${started_by})" >&2
if ! started=$(aws "${run_args[@]}"); then
    finish 1 "aws ecs run-task failed (see the error above); no task was started"
fi
IFS=$'\t' read -r task_arn failure_arn failure_reason failure_detail <<<"$started" || true
if [[ -z ${task_arn:-} || $task_arn == None ]]; then
    finish 1 "no task was started: ${failure_reason:-unknown reason} ${failure_arn:-} ${failure_detail:-}"
fi
task_id=${task_arn##*/}
region=$(cut -d: -f4 <<<"$task_arn")
echo "run-migrations: task ${task_arn}" >&2

read_log_config
console="https://${region}.console.aws.amazon.com"
echo "run-migrations: task console: ${console}/ecs/v2/clusters/${cluster}/tasks/${task_id}/configuration?region=${region}" >&2
if [[ -n $log_group ]]; then
    stream=$(stream_of "$task_id")
    echo "run-migrations: logs: group ${log_group} stream ${stream}" >&2
    logs_url=$(logs_url_of "$region" "$task_id")
    echo "run-migrations: logs console: ${logs_url}" >&2
    echo "run-migrations: follow with: aws logs tail ${log_group} --log-stream-names ${stream} --follow" >&2
fi

deadline=$((SECONDS + max_wait))
if ! wait_for_tasks "task ${task_id}" "$task_arn"; then
    finish 1 "task ${task_id} still not stopped after ${max_wait}s; it keeps running (stop it with: aws ecs stop-task --cluster ${cluster} --task ${task_arn})"
fi

IFS=$'\t' read -r last_status stop_code exit_code container_reason stopped_reason < <(
    aws ecs describe-tasks --cluster "$cluster" --tasks "$task_arn" \
        --query "tasks[0].[lastStatus, stopCode, containers[?name=='${container}'] | [0].exitCode, containers[?name=='${container}'] | [0].reason, stoppedReason]" \
        --output text
) || true

echo "run-migrations: task ${task_id} ${last_status:-UNKNOWN} (stopCode ${stop_code:-None}): ${stopped_reason:-no reason given}" >&2
if [[ ${exit_code:-None} =~ ^[0-9]+$ ]]; then
    finish "$exit_code" "container ${container} exited with code ${exit_code}"
fi
finish 1 "container ${container} has no exit code (it did not run): ${container_reason:-None}; ${stopped_reason:-None}"
