{{/* Chart name, truncated to the 63 characters Kubernetes allows in a label. */}}
{{- define "migrate-job.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release name + chart name, unless the release name already contains it. */}}
{{- define "migrate-job.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "migrate-job.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "migrate-job.labels" -}}
helm.sh/chart: {{ include "migrate-job.chart" . }}
{{ include "migrate-job.selectorLabels" . }}
app.kubernetes.io/component: migrations
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "migrate-job.selectorLabels" -}}
app.kubernetes.io/name: {{ include "migrate-job.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the Job runs as. */}}
{{- define "migrate-job.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "migrate-job.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "migrate-job.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}

{{/* Fleet mode: refuse values that cannot work, with the value's name (rendering fails, nothing is applied). */}}
{{- define "migrate-job.fleetChecks" -}}
{{- if .Values.fleet.enabled }}
{{- if semverCompare "<1.29.0-0" .Capabilities.KubeVersion.Version }}
{{- fail (printf "fleet.enabled needs Kubernetes 1.29 or later (Indexed Job backoffLimitPerIndex); this cluster is %s" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- range $name := list "shards" "parallelism" "perPod" }}
{{- if lt (int (index $.Values.fleet $name)) 1 }}
{{- fail (printf "fleet.%s must be a whole number of at least 1" $name) }}
{{- end }}
{{- end }}
{{- if lt (int .Values.fleet.backoffLimitPerIndex) 0 }}
{{- fail "fleet.backoffLimitPerIndex must be 0 or more" }}
{{- end }}
{{- if and .Values.fleet.targets.configMap (not (regexMatch "^[-._a-zA-Z0-9]+\\.(toml|ya?ml|json)$" (toString .Values.fleet.targets.key))) }}
{{- fail "fleet.targets.key must be a ConfigMap key ending in .toml, .yaml, .yml or .json (it picks the file format)" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Where the targets ConfigMap is mounted (read-only) in fleet mode. */}}
{{- define "migrate-job.fleetTargetsDir" -}}
/etc/migrate-job/targets
{{- end }}

{{/* Fleet mode's MIGRATE_* map as JSON: `env` plus the fleet settings (`env` wins, except the shard count,
which must match the Job's completions). */}}
{{- define "migrate-job.fleetEnv" -}}
{{- $env := deepCopy (.Values.env | default dict) }}
{{- $fleet := dict "MIGRATE_FLEET_PARALLEL" (toString (int .Values.fleet.perPod)) "MIGRATE_REPORT_FILE" "/tmp/migrate-fleet-report.json" }}
{{- if .Values.fleet.targets.configMap }}
{{- $_ := set $fleet "MIGRATE_FLEET_TARGETS" (printf "%s/%s" (include "migrate-job.fleetTargetsDir" .) .Values.fleet.targets.key) }}
{{- end }}
{{- $env = merge $env $fleet }}
{{- $_ := set $env "MIGRATE_FLEET_SHARDS" (toString (int .Values.fleet.shards)) }}
{{- toJson $env }}
{{- end }}
