{{/* Names, labels and the pieces every fluxfunc pod shares. */}}

{{- define "fluxfunc.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fluxfunc.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* selector labels of one component: (dict "root" $ "component" "server") */}}
{{- define "fluxfunc.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "fluxfunc.image" -}}
{{- $img := .root.Values.image -}}
{{- $repo := printf "%s%s" $img.prefix .role -}}
{{- if $img.registry }}{{ $repo = printf "%s/%s" (trimSuffix "/" $img.registry) $repo }}{{ end -}}
{{- printf "%s:%s" $repo (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}

{{- define "fluxfunc.secretName" -}}
{{- default (printf "%s-secret" (include "fluxfunc.fullname" .)) .Values.existingSecret -}}
{{- end -}}

{{- define "fluxfunc.configName" -}}
{{- printf "%s-config" (include "fluxfunc.fullname" .) -}}
{{- end -}}

{{/* The Redis address (host:port) KEDA reads the streams from. */}}
{{- define "fluxfunc.redisAddress" -}}
{{- if .Values.workerAutoscaling.address -}}
{{- .Values.workerAutoscaling.address -}}
{{- else -}}
{{- $u := urlParse (required "workerAutoscaling.address or redis.url is required for KEDA" .Values.redis.url) -}}
{{- if contains ":" $u.host }}{{ $u.host }}{{ else }}{{ printf "%s:6379" $u.host }}{{ end -}}
{{- end -}}
{{- end -}}

{{/* The fluxfunc.yaml of the ConfigMap: config plus the Redis namespace/Sentinel. */}}
{{- define "fluxfunc.configYaml" -}}
{{- $redis := dict "namespace" .Values.redis.namespace -}}
{{- if .Values.redis.sentinel.enabled -}}
{{- $_ := set $redis "sentinel" (dict "hosts" (required "redis.sentinel.hosts is required" .Values.redis.sentinel.hosts) "service" .Values.redis.sentinel.service) -}}
{{- end -}}
{{- $server := dict "host" "0.0.0.0" "port" (int .Values.server.port) -}}
{{- $fixed := dict "redis" $redis "server" $server "store" (dict "auto_migrate" false) -}}
{{- toYaml (mustMergeOverwrite (deepCopy .Values.config) $fixed) -}}
{{- end -}}

{{/* env, volumes and mounts shared by every fluxfunc container */}}
{{- define "fluxfunc.env" -}}
- name: FLUXFUNC_CONFIG
  value: /etc/fluxfunc/fluxfunc.yaml
- name: FLUXFUNC_STATE_DIR
  value: /tmp
{{- end -}}

{{- define "fluxfunc.envFrom" -}}
- secretRef:
    name: {{ include "fluxfunc.secretName" . }}
{{- end -}}

{{- define "fluxfunc.volumeMounts" -}}
- name: config
  mountPath: /etc/fluxfunc
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "fluxfunc.volumes" -}}
- name: config
  configMap:
    name: {{ include "fluxfunc.configName" . }}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end -}}

{{/* pod-level bits: (dict "root" $ "component" "server" "spec" .Values.server) */}}
{{- define "fluxfunc.podMeta" -}}
labels:
  {{- include "fluxfunc.selector" . | nindent 2 }}
  {{- with .root.Values.podLabels }}{{ toYaml . | nindent 2 }}{{ end }}
annotations:
  checksum/config: {{ include "fluxfunc.configYaml" .root | sha256sum }}
  {{- with .root.Values.podAnnotations }}{{ toYaml . | nindent 2 }}{{ end }}
{{- end -}}

{{- define "fluxfunc.podCommon" -}}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .spec.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .spec.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .spec.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  {{- include "fluxfunc.volumes" .root | nindent 2 }}
{{- if hasPrefix "worker-" .component }}
  # the worker's installed package sets: local to the pod, no shared volume (docs/packages.md)
  - name: packages
    emptyDir:
      sizeLimit: {{ .root.Values.worker.packagesSizeLimit | default "2Gi" }}
{{- end }}
{{- end -}}

{{/* "true" when KEDA needs a password: the chart's Secret has REDIS_PASSWORD, or an existing
Secret is named and workerAutoscaling.passwordKey says which key. */}}
{{- define "fluxfunc.redisAuth" -}}
{{- if .Values.existingSecret -}}
{{- if .Values.workerAutoscaling.passwordKey }}true{{ end -}}
{{- else if .Values.redis.sentinel.enabled -}}
{{- if .Values.redis.sentinel.password }}true{{ end -}}
{{- else if .Values.redis.url -}}
{{- if contains ":" (urlParse .Values.redis.url).userinfo }}true{{ end -}}
{{- end -}}
{{- end -}}

{{/* A grace period at least the drain/shutdown deadline of the config plus a margin:
(dict "set" <values' seconds> "section" <config section> "key" "drain_seconds" "default" 30 "margin" 30) */}}
{{- define "fluxfunc.grace" -}}
{{- $deadline := .default -}}
{{- if and .section (hasKey .section .key) }}{{ $deadline = index .section .key }}{{ end -}}
{{- max (int .set) (add (int (ceil (float64 $deadline))) .margin) -}}
{{- end -}}
