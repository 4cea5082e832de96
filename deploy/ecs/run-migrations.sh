#!/usr/bin/env bash
# Run migrate-job once as an ECS Fargate task, wait for it to stop, and exit with the container's exit code
# (see deploy/README.md for what each code means to a deploy pipeline).
#
# Usage:
#   deploy/ecs/run-migrations.sh --cluster NAME --subnets subnet-a,subnet-b --security-groups sg-1 \
#       [--task-definition migrate-job[:REVISION]|ARN] [--container migrate-job] [--assign-public-ip DISABLED]
#       [--started-by TEXT] [--max-wait SECONDS] [-- COMMAND ARGS...]
#
# Every option can also come from the environment: ECS_CLUSTER, ECS_TASK_DEFINITION, ECS_SUBNETS,
# ECS_SECURITY_GROUPS, ECS_CONTAINER_NAME, ECS_ASSIGN_PUBLIC_IP, ECS_STARTED_BY, ECS_MAX_WAIT_SECONDS (checked
# between `aws ecs wait` calls, which give up after 10 minutes each; ECS_WAIT_RETRY_DELAY seconds apart).
# Arguments after `--` replace the container's command, e.g. `-- migrate --dry-run` or `-- status`.
# In GitHub Actions the outcome is added to the step summary.
#
# Needs the AWS CLI v2 with credentials allowed to ecs:RunTask, ecs:DescribeTasks, ecs:DescribeTaskDefinition
# and iam:PassRole on the task and execution roles.
#
# Exit status: the container's exit code; 1 when the task stopped without one (it never started: image pull,
# secret injection, capacity, ...), or when it did not stop within --max-wait; 2 for bad usage.
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
if ((${#command_override[@]})); then
    items=()
    for arg in "${command_override[@]}"; do
        items+=("$(json_string "$arg")")
    done
    joined=$(IFS=,; echo "${items[*]}")
    run_args+=(--overrides "{\"containerOverrides\":[{\"name\":$(json_string "$container"),\"command\":[${joined}]}]}")
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

# The awslogs stream of the container is <prefix>/<container>/<task id>.
log_group=""
log_prefix=""
if read -r log_group log_prefix < <(aws ecs describe-task-definition --task-definition "$task_definition" \
    --query "taskDefinition.containerDefinitions[?name=='${container}'] | [0].logConfiguration.options.[\"awslogs-group\", \"awslogs-stream-prefix\"]" \
    --output text 2>/dev/null); then :; fi
console="https://${region}.console.aws.amazon.com"
echo "run-migrations: task console: ${console}/ecs/v2/clusters/${cluster}/tasks/${task_id}/configuration?region=${region}" >&2
if [[ -n $log_group && $log_group != None ]]; then
    stream="${log_prefix}/${container}/${task_id}"
    [[ -n $log_prefix && $log_prefix != None ]] || stream="${container}/${task_id}"
    enc_group=${log_group//\//\$252F}
    enc_stream=${stream//\//\$252F}
    echo "run-migrations: logs: group ${log_group} stream ${stream}" >&2
    logs_url="${console}/cloudwatch/home?region=${region}#logsV2:log-groups/log-group/${enc_group}/log-events/${enc_stream}"
    echo "run-migrations: logs console: ${logs_url}" >&2
    echo "run-migrations: follow with: aws logs tail ${log_group} --log-stream-names ${stream} --follow" >&2
fi

# `aws ecs wait tasks-stopped` gives up after 100 polls of 6 s (10 minutes): wait again until max_wait.
deadline=$((SECONDS + max_wait))
until aws ecs wait tasks-stopped --cluster "$cluster" --tasks "$task_arn"; do
    if ((SECONDS >= deadline)); then
        finish 1 "task ${task_id} still not stopped after ${max_wait}s; it keeps running (stop it with: aws ecs stop-task --cluster ${cluster} --task ${task_arn})"
    fi
    echo "run-migrations: task ${task_id} still running; waiting again" >&2
    sleep "$retry_delay"
done

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
