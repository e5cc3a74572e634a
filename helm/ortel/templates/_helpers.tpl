{{/* Name of the chart, overridable. */}}
{{- define "ortel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart, cut to the 63 characters DNS names allow. */}}
{{- define "ortel.fullname" -}}
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

{{- define "ortel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ortel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ortel.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ortel.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ortel
{{- end }}

{{- define "ortel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ortel.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ortel.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* http, or https when the web config enables TLS. */}}
{{- define "ortel.scheme" -}}
{{- if .Values.web.tls }}https{{ else }}http{{ end }}
{{- end }}

{{/* The config file: the user's keys, with the ones the chart's mounts decide on top. */}}
{{- define "ortel.config" -}}
{{- $fixed := dict "listen" (printf ":%d" (int .Values.port)) "sysfs" "/host/sys" "procfs" "/host/proc" }}
{{- if .Values.multiproc.enabled }}
{{- $_ := set $fixed "multiproc_dir" "/run/ortel" }}
{{- end }}
{{- toYaml (merge $fixed (deepCopy .Values.config)) }}
{{- end }}

{{/* Endpoint settings shared by the ServiceMonitor and the PodMonitor. */}}
{{- define "ortel.scrapeEndpoint" -}}
path: /metrics
scheme: {{ .monitor.scheme | default (include "ortel.scheme" .root) }}
{{- with .monitor.interval }}
interval: {{ . }}
{{- end }}
{{- with .monitor.scrapeTimeout }}
scrapeTimeout: {{ . }}
{{- end }}
{{- if .monitor.honorLabels }}
honorLabels: true
{{- end }}
{{- with .monitor.tlsConfig }}
tlsConfig:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .monitor.basicAuth }}
basicAuth:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .monitor.authorization }}
authorization:
  {{- toYaml . | nindent 2 }}
{{- end }}
relabelings:
  # One target per node: name it after the node rather than the pod IP.
  - sourceLabels: [__meta_kubernetes_pod_node_name]
    targetLabel: node
    action: replace
  {{- with .monitor.relabelings }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .monitor.metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
