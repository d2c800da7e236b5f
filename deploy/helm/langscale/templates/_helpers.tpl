{{/* vim: set filetype=mustache: */}}

{{/*
Chart name, truncated to 63 characters (DNS label limit).
*/}}
{{- define "langscale.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name: "<release>-<chart>", or the release name when it already contains the chart name.
Truncated so that "<fullname>-<component>-<suffix>" stays within 63 characters.
*/}}
{{- define "langscale.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Name of a component's objects. Usage: include "langscale.componentName" (dict "context" $ "component" "worker")
*/}}
{{- define "langscale.componentName" -}}
{{- printf "%s-%s" (include "langscale.fullname" .context) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Chart label value.
*/}}
{{- define "langscale.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Selector labels: only name, instance and (optionally) component. Never change these on an
existing release: Deployment and StatefulSet selectors are immutable.
Usage: include "langscale.selectorLabels" (dict "context" $ "component" "gateway")
*/}}
{{- define "langscale.selectorLabels" -}}
app.kubernetes.io/name: {{ include "langscale.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{/*
Standard labels of every object.
Usage: include "langscale.labels" (dict "context" $ "component" "gateway")
*/}}
{{- define "langscale.labels" -}}
helm.sh/chart: {{ include "langscale.chart" .context }}
{{ include "langscale.selectorLabels" . }}
app.kubernetes.io/version: {{ .context.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .context.Release.Service }}
app.kubernetes.io/part-of: langscale
{{- with .context.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
metadata.annotations block (common + extra annotations), indented for metadata; empty when none.
Usage: include "langscale.annotations" (dict "context" $ "extra" .Values.gateway.service.annotations)
*/}}
{{- define "langscale.annotations" -}}
{{- $all := merge (dict) (.extra | default dict) (.context.Values.commonAnnotations | default dict) -}}
{{- with $all }}
  annotations:
    {{- toYaml . | nindent 4 }}
{{- end }}
{{- end -}}

{{/*
Image reference: registry/repository:tag or registry/repository@digest.
Usage: include "langscale.image" (dict "image" .Values.gateway.image "registry" .Values.imageRegistry "context" $)
*/}}
{{- define "langscale.image" -}}
{{- $registry := .registry | default "" -}}
{{- $repo := .image.repository -}}
{{- if $registry }}{{ $repo = printf "%s/%s" $registry $repo }}{{ end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repo .image.digest -}}
{{- else -}}
{{- $tag := .image.tag | default .context.Chart.AppVersion | toString -}}
{{- if eq $tag "latest" -}}
{{- fail (printf "image %s: tag \"latest\" is not allowed, pin a version (or a digest)" .image.repository) -}}
{{- end -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end -}}

{{/*
ServiceAccount name.
*/}}
{{- define "langscale.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "langscale.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Name of the Redis Service of the bundled Redis.
*/}}
{{- define "langscale.redis.fullname" -}}
{{- include "langscale.componentName" (dict "context" . "component" "redis") -}}
{{- end -}}

{{/*
Name of the Secret the chart creates for Redis (bundled password + URL, or externalRedis.url).
*/}}
{{- define "langscale.redis.secretName" -}}
{{- printf "%s-redis-auth" (include "langscale.fullname" .) -}}
{{- end -}}

{{/*
Whether the chart creates the Redis Secret.
*/}}
{{- define "langscale.redis.createSecret" -}}
{{- if .Values.redis.enabled -}}true
{{- else if and .Values.externalRedis.enabled .Values.externalRedis.url (not .Values.externalRedis.existingSecretUrlKey) -}}true
{{- end -}}
{{- end -}}

{{/*
Env entries that give a container LANGSCALE_REDIS_URL. The URL (which may carry a password)
always comes from a Secret through secretKeyRef; when the chart builds the URL from host and
port, only the password comes from the Secret and Kubernetes expands $(REDIS_PASSWORD).
*/}}
{{- define "langscale.redis.env" -}}
{{- $ext := .Values.externalRedis -}}
{{- if .Values.redis.enabled }}
- name: LANGSCALE_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "langscale.redis.secretName" . }}
      key: redis-url
{{- else if $ext.existingSecretUrlKey }}
- name: LANGSCALE_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $ext.existingSecret }}
      key: {{ $ext.existingSecretUrlKey }}
{{- else if $ext.url }}
- name: LANGSCALE_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "langscale.redis.secretName" . }}
      key: redis-url
{{- else }}
{{- $scheme := ternary "rediss" "redis" $ext.tls }}
{{- if $ext.existingSecretPasswordKey }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $ext.existingSecret }}
      key: {{ $ext.existingSecretPasswordKey }}
- name: LANGSCALE_REDIS_URL
  value: {{ printf "%s://%s:$(REDIS_PASSWORD)@%s:%d/%d" $scheme $ext.username $ext.host (int $ext.port) (int $ext.database) | quote }}
{{- else }}
- name: LANGSCALE_REDIS_URL
  value: {{ printf "%s://%s:%d/%d" $scheme $ext.host (int $ext.port) (int $ext.database) | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Env entries shared by gateway and worker: downward API, OTEL resource attributes, secrets.
Usage: include "langscale.commonEnv" (dict "context" $ "component" "worker")
*/}}
{{- define "langscale.commonEnv" -}}
{{- $ := .context -}}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: K8S_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: K8S_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: OTEL_SERVICE_NAME
  value: {{ printf "langscale-%s" .component | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "service.namespace=$(K8S_NAMESPACE),k8s.namespace.name=$(K8S_NAMESPACE),k8s.pod.name=$(K8S_POD_NAME),k8s.node.name=$(K8S_NODE_NAME),service.version=%s%s" $.Chart.AppVersion (ternary (printf ",%s" $.Values.telemetry.resourceAttributes) "" (ne $.Values.telemetry.resourceAttributes "")) | quote }}
{{- include "langscale.redis.env" $ }}
{{- end -}}

{{/*
Pod annotations: config checksum (rolls pods when the ConfigMap or externalRedis.url changes),
scrape annotations, user annotations.
Usage: include "langscale.podAnnotations" (dict "context" $ "port" 8000 "extra" .Values.gateway.podAnnotations)
*/}}
{{- define "langscale.podAnnotations" -}}
{{- $ := .context -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") $ | sha256sum }}
{{- if and $.Values.externalRedis.enabled $.Values.externalRedis.url }}
checksum/redis-url: {{ $.Values.externalRedis.url | sha256sum }}
{{- end }}
{{- if $.Values.metrics.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | int | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Topology spread constraints with a default labelSelector.
Usage: include "langscale.topologySpread" (dict "context" $ "component" "worker" "constraints" .Values.worker.topologySpreadConstraints)
*/}}
{{- define "langscale.topologySpread" -}}
{{- range .constraints }}
{{- $c := deepCopy . }}
{{- if not $c.labelSelector }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" (include "langscale.selectorLabels" (dict "context" $.context "component" $.component) | fromYaml)) }}
{{- end }}
- {{ toYaml $c | nindent 2 | trim }}
{{- end }}
{{- end -}}

{{/*
Target per worker replica in milli-units: round(concurrency * targetUtilization * 1000).
*/}}
{{- define "langscale.worker.targetMilli" -}}
{{- $w := .Values.worker -}}
{{- round (mulf $w.concurrency $w.autoscaling.targetUtilization 1000) 0 | int64 -}}
{{- end -}}

{{/*
Target per worker replica as a Kubernetes quantity: "80" when whole, else milli ("7500m").
*/}}
{{- define "langscale.worker.targetQuantity" -}}
{{- $m := include "langscale.worker.targetMilli" . | int64 -}}
{{- if eq (mod $m 1000) 0 -}}
{{- div $m 1000 -}}
{{- else -}}
{{- printf "%dm" $m -}}
{{- end -}}
{{- end -}}

{{/*
Target per worker replica as a decimal string (KEDA thresholds): "80" or "7.5".
*/}}
{{- define "langscale.worker.targetDecimal" -}}
{{- $m := include "langscale.worker.targetMilli" . | int64 -}}
{{- if eq (mod $m 1000) 0 -}}
{{- div $m 1000 -}}
{{- else -}}
{{- printf "%g" (divf $m 1000) -}}
{{- end -}}
{{- end -}}

{{/*
Prometheus metric the workers scale on.
*/}}
{{- define "langscale.worker.queueMetric" -}}
{{- if eq .Values.worker.autoscaling.metric "ready" -}}
langscale_queue_ready_jobs
{{- else -}}
langscale_queue_backlog_jobs
{{- end -}}
{{- end -}}

{{/*
Worker terminationGracePeriodSeconds: drain window + margin, unless set explicitly (checked
in langscale.validate).
*/}}
{{- define "langscale.worker.terminationGracePeriodSeconds" -}}
{{- $w := .Values.worker -}}
{{- if kindIs "invalid" $w.terminationGracePeriodSeconds -}}
{{- add $w.drainTimeoutSeconds $w.drainMarginSeconds -}}
{{- else -}}
{{- $w.terminationGracePeriodSeconds | int64 -}}
{{- end -}}
{{- end -}}

{{/*
In-cluster URL of the gateway Service.
*/}}
{{- define "langscale.gateway.url" -}}
{{- printf "http://%s.%s.svc:%d" (include "langscale.componentName" (dict "context" . "component" "gateway")) .Release.Namespace (int .Values.gateway.service.port) -}}
{{- end -}}

{{/*
NetworkPolicy egress rules every langscale pod needs: DNS, Redis, and the extra rules.
*/}}
{{- define "langscale.networkPolicy.baseEgress" -}}
- to:
    {{- toYaml .Values.networkPolicy.dns.to | nindent 4 }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- if .Values.redis.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "langscale.selectorLabels" (dict "context" . "component" "redis") | nindent 10 }}
  ports:
    - port: 6379
      protocol: TCP
{{- else }}
- to:
    {{- range .Values.externalRedis.networkPolicyCIDRs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    - port: {{ .Values.externalRedis.port | int64 }}
      protocol: TCP
{{- end }}
{{- with .Values.networkPolicy.extraEgress }}
{{ toYaml . }}
{{- end }}
{{- end -}}
