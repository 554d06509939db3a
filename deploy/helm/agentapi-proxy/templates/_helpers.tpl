{{/* The name of every object: the release's, unless it lacks the chart's. */}}
{{- define "agentapi-proxy.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of the proxy's objects (never agentproxy's managed-by label: that marks agents). */}}
{{- define "agentapi-proxy.labels" -}}
app.kubernetes.io/name: agentproxy
app.kubernetes.io/component: proxy
app.kubernetes.io/part-of: agentproxy
{{- end -}}

{{- define "agentapi-proxy.selectorLabels" -}}
app.kubernetes.io/name: agentproxy
app.kubernetes.io/component: proxy
{{- end -}}
