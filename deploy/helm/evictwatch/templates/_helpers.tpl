{{/* The chart name, or nameOverride. */}}
{{- define "evictwatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object's name: the release name, made to contain the chart name. */}}
{{- define "evictwatch.fullname" -}}
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

{{- define "evictwatch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Pod selector: also the operator's own identity (config `self.labels`). */}}
{{- define "evictwatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "evictwatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "evictwatch.labels" -}}
helm.sh/chart: {{ include "evictwatch.chart" . }}
{{ include "evictwatch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: evictwatch
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "evictwatch.serviceAccountName" -}}
{{- include "evictwatch.fullname" . }}
{{- end }}

{{/* The Secret holding tls.crt, tls.key and ca.crt (either mode). */}}
{{- define "evictwatch.tlsSecretName" -}}
{{- printf "%s-tls" (include "evictwatch.fullname" .) }}
{{- end }}

{{/* The Secret holding the record-signing key (entry `key`). */}}
{{- define "evictwatch.recordKeySecretName" -}}
{{- .Values.recordKey.existingSecret | default (printf "%s-record-key" (include "evictwatch.fullname" .)) }}
{{- end }}

{{- define "evictwatch.certificateName" -}}
{{- printf "%s-serving" (include "evictwatch.fullname" .) }}
{{- end }}

{{- define "evictwatch.issuerName" -}}
{{- printf "%s-selfsigned" (include "evictwatch.fullname" .) }}
{{- end }}

{{/* The webhook Service (443 -> the webhook port). */}}
{{- define "evictwatch.webhookServiceName" -}}
{{- printf "%s-webhook" (include "evictwatch.fullname" .) }}
{{- end }}

{{- define "evictwatch.metricsServiceName" -}}
{{- printf "%s-metrics" (include "evictwatch.fullname" .) }}
{{- end }}

{{/* The DNS names the serving certificate covers: what the API server dials. */}}
{{- define "evictwatch.dnsNames" -}}
{{- $svc := include "evictwatch.webhookServiceName" . }}
- {{ $svc }}
- {{ printf "%s.%s" $svc .Release.Namespace }}
- {{ printf "%s.%s.svc" $svc .Release.Namespace }}
{{- end }}

{{/* The operator's config.yaml: defaults < .Values.config < what the chart's wiring needs. */}}
{{- define "evictwatch.config" -}}
{{- $defaults := dict }}
{{- $_ := set $defaults "controller" (dict "leaderElection" (dict "leaseName" (include "evictwatch.fullname" .))) }}
{{- $_ := set $defaults "watchers" (dict "evictionRequests" .Values.doors.evictionRequests) }}
{{- if not (hasKey .Values.config "self") }}
{{- $_ := set $defaults "self" (dict "namespace" .Release.Namespace "labels" (include "evictwatch.selectorLabels" . | fromYaml)) }}
{{- end }}
{{- $wiring := dict
  "webhook" (dict
    "host" "0.0.0.0"
    "port" (int .Values.webhook.port)
    "certFile" "/etc/evictwatch/tls/tls.crt"
    "keyFile" "/etc/evictwatch/tls/tls.key")
  "metricsPort" (int .Values.metrics.port) }}
{{- $config := mustMergeOverwrite $defaults (deepCopy .Values.config) $wiring }}
{{- toYaml $config }}
{{- end }}
