{{/* The release's name for every object, at most 63 characters. */}}
{{- define "agc.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "agc.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "agc.labels" -}}
{{ include "agc.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "agc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "agc.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "agc.validate" -}}
{{- if not (has .Values.provider (list "local" "azure" "memory")) -}}
{{- fail (printf "provider must be local, azure or memory, not %q" .Values.provider) -}}
{{- end -}}
{{- if not (has .Values.dataplane.serviceType (list "LoadBalancer" "NodePort" "ClusterIP")) -}}
{{- fail (printf "dataplane.serviceType must be LoadBalancer, NodePort or ClusterIP, not %q" .Values.dataplane.serviceType) -}}
{{- end -}}
{{- if and .Values.azure.workloadIdentity.enabled (not .Values.azure.workloadIdentity.clientId) -}}
{{- fail "azure.workloadIdentity.clientId is required when azure.workloadIdentity.enabled is true" -}}
{{- end -}}
{{- end -}}
