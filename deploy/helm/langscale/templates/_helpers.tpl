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
Image reference: registry/repository:tag or registry/repository@digest. "path" names the
value in messages (e.g. "gateway.image").
Usage: include "langscale.image" (dict "image" .Values.gateway.image "registry" .Values.imageRegistry "path" "gateway.image" "context" $)
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
{{- fail (printf "langscale: %s.tag \"latest\" is not allowed: pin a version (e.g. %s) or set %s.digest (sha256:...)" .path .context.Chart.AppVersion .path) -}}
{{- end -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end -}}

{{/*
ServiceAccount name of a component: its own (serviceAccount.name, default
"<fullname>-<component>").
Usage: include "langscale.serviceAccountName" (dict "context" $ "component" "worker")
*/}}
{{- define "langscale.serviceAccountName" -}}
{{- $sa := (index .context.Values .component).serviceAccount -}}
{{- if $sa.create -}}
{{- default (include "langscale.componentName" .) $sa.name -}}
{{- else -}}
{{- required (printf "langscale: %s.serviceAccount.name is required when %s.serviceAccount.create is false" .component .component) $sa.name -}}
{{- end -}}
{{- end -}}

{{/*
Name of the Redis Service of the bundled Redis.
*/}}
{{- define "langscale.redis.fullname" -}}
{{- include "langscale.componentName" (dict "context" . "component" "redis") -}}
{{- end -}}

{{/*
Name of the Secret the chart creates for Redis: the bundled Redis's generated password, or
externalRedis.url.
*/}}
{{- define "langscale.redis.secretName" -}}
{{- printf "%s-redis-auth" (include "langscale.fullname" .) -}}
{{- end -}}

{{/*
Whether the chart creates the Redis Secret.
*/}}
{{- define "langscale.redis.createSecret" -}}
{{- if .Values.redis.enabled -}}
{{- if not .Values.redis.auth.existingSecret -}}true{{- end -}}
{{- else if and .Values.externalRedis.enabled .Values.externalRedis.url (not .Values.externalRedis.existingSecretUrlKey) (not .Values.externalRedis.sentinel.enabled) -}}true
{{- end -}}
{{- end -}}

{{/*
The Secret and key holding the password that the URL is built with ("" when none).
Returns YAML: {name: ..., key: ...}.
*/}}
{{- define "langscale.redis.passwordRef" -}}
{{- $ext := .Values.externalRedis -}}
{{- if .Values.redis.enabled -}}
name: {{ .Values.redis.auth.existingSecret | default (include "langscale.redis.secretName" .) }}
key: {{ ternary .Values.redis.auth.existingSecretPasswordKey "redis-password" (ne .Values.redis.auth.existingSecret "") }}
{{- else if and $ext.existingSecret $ext.existingSecretPasswordKey (not $ext.existingSecretUrlKey) -}}
name: {{ $ext.existingSecret }}
key: {{ $ext.existingSecretPasswordKey }}
{{- end -}}
{{- end -}}

{{/*
The port of a URL ("" when it has none). Usage: include "langscale.urlPort" "rediss://h:6380/0"
*/}}
{{- define "langscale.urlPort" -}}
{{- $host := (urlParse .).host -}}
{{- if regexMatch ":[0-9]+$" $host -}}
{{- regexFind "[0-9]+$" $host -}}
{{- end -}}
{{- end -}}

{{/*
The ports of a list of "host[:port]" (the default port when one has none), comma separated.
Usage: include "langscale.hostPorts" (dict "hosts" (list "a:7000" "b") "default" "6379")
*/}}
{{- define "langscale.hostPorts" -}}
{{- $default := .default -}}
{{- $ports := list -}}
{{- range .hosts -}}
{{- $ports = append $ports (ternary (regexFind "[0-9]+$" .) $default (regexMatch ":[0-9]+$" .)) -}}
{{- end -}}
{{- $ports | join "," -}}
{{- end -}}

{{/*
TCP ports the pods reach Redis on, comma separated: the bundled Redis's 6379; or the external
Redis's port (externalRedis.port, else the port of externalRedis.url, else 6379), plus the
Sentinel ports.
*/}}
{{- define "langscale.redis.ports" -}}
{{- $ext := .Values.externalRedis -}}
{{- $ports := list -}}
{{- if .Values.redis.enabled -}}
{{- $ports = list 6379 -}}
{{- else -}}
{{- $dataPort := 6379 -}}
{{- if not (kindIs "invalid" $ext.port) -}}
{{- $dataPort = int64 $ext.port -}}
{{- else if and $ext.cluster.enabled $ext.cluster.nodes (not $ext.existingSecretUrlKey) -}}
{{- $dataPort = "" -}}
{{- range (include "langscale.hostPorts" (dict "hosts" $ext.cluster.nodes "default" "6379") | splitList ",") -}}
{{- $ports = append $ports (int64 .) -}}
{{- end -}}
{{- else if and $ext.url (not $ext.existingSecretUrlKey) (regexMatch "^rediss?\\+cluster://" $ext.url) -}}
{{- $dataPort = "" -}}
{{- range (include "langscale.hostPorts" (dict "hosts" (regexReplaceAll "^[^/]*//([^@/]*@)?([^/?]*).*$" $ext.url "${2}" | splitList ",") "default" "6379") | splitList ",") -}}
{{- $ports = append $ports (int64 .) -}}
{{- end -}}
{{- else if and $ext.url (not $ext.existingSecretUrlKey) (include "langscale.urlPort" $ext.url) -}}
{{- $dataPort = include "langscale.urlPort" $ext.url | int64 -}}
{{- end -}}
{{- if ne (toString $dataPort) "" -}}
{{- $ports = append $ports $dataPort -}}
{{- end -}}
{{- if $ext.sentinel.enabled -}}
{{- range $ext.sentinel.hosts -}}
{{- $ports = append $ports (ternary (regexFind "[0-9]+$" .) "26379" (regexMatch ":[0-9]+$" .) | int64) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $ports | uniq | join "," -}}
{{- end -}}

{{/*
Env entries that give a container LANGSCALE_REDIS_URL. A URL that may carry a password
always comes from a Secret through secretKeyRef; when the chart builds the URL (bundled Redis,
externalRedis.host or .sentinel), only the password comes from a Secret and Kubernetes expands
$(REDIS_PASSWORD) in the value.
*/}}
{{- define "langscale.redis.env" -}}
{{- $ext := .Values.externalRedis -}}
{{- $passwordRef := include "langscale.redis.passwordRef" . | fromYaml -}}
{{- if and (not .Values.redis.enabled) $ext.existingSecretUrlKey }}
- name: LANGSCALE_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $ext.existingSecret }}
      key: {{ $ext.existingSecretUrlKey }}
{{- else if and (not .Values.redis.enabled) $ext.url }}
- name: LANGSCALE_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "langscale.redis.secretName" . }}
      key: redis-url
{{- else }}
{{- $userinfo := "" }}
{{- if $passwordRef }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $passwordRef.name }}
      key: {{ $passwordRef.key }}
{{- $userinfo = printf "%s:$(REDIS_PASSWORD)@" (ternary "" $ext.username .Values.redis.enabled) }}
{{- end }}
{{- if .Values.redis.enabled }}
- name: LANGSCALE_REDIS_URL
  value: {{ printf "redis://%s%s:6379/0" $userinfo (include "langscale.redis.fullname" .) | quote }}
{{- else if $ext.cluster.enabled }}
{{- $hosts := list }}
{{- range $ext.cluster.nodes }}
{{- $hosts = append $hosts (ternary . (printf "%s:6379" .) (regexMatch ":[0-9]+$" .)) }}
{{- end }}
- name: LANGSCALE_REDIS_URL
  value: {{ printf "%s://%s%s" (ternary "rediss+cluster" "redis+cluster" $ext.tls) $userinfo (join "," $hosts) | quote }}
{{- else if $ext.sentinel.enabled }}
{{- $hosts := list }}
{{- range $ext.sentinel.hosts }}
{{- $hosts = append $hosts (ternary . (printf "%s:26379" .) (regexMatch ":[0-9]+$" .)) }}
{{- end }}
- name: LANGSCALE_REDIS_URL
  value: {{ printf "redis+sentinel://%s%s/%s/%d" $userinfo (join "," $hosts) $ext.sentinel.masterSet (int $ext.database) | quote }}
{{- else }}
- name: LANGSCALE_REDIS_URL
  value: {{ printf "%s://%s%s:%d/%d" (ternary "rediss" "redis" $ext.tls) $userinfo $ext.host (include "langscale.redis.ports" . | splitList "," | first | int) (int $ext.database) | quote }}
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
The bundled Redis's generated password: generated once per render (shared by the Secret and
the pods' checksum), kept across `helm upgrade` by a lookup of the existing Secret. Only a real
cluster answers the lookup: under `helm template` (Argo CD, Flux) it changes on every render,
so GitOps users set redis.auth.existingSecret.
*/}}
{{- define "langscale.redis.generatedPassword" -}}
{{- $cache := .Values._langscaleGenerated | default dict -}}
{{- if not (hasKey $cache "redisPassword") -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "langscale.redis.secretName" .) -}}
{{- $password := randAlphaNum 32 -}}
{{- if and $existing $existing.data (hasKey $existing.data "redis-password") -}}
{{- $password = index $existing.data "redis-password" | b64dec -}}
{{- end -}}
{{- $_ := set $cache "redisPassword" $password -}}
{{- $_ := set .Values "_langscaleGenerated" $cache -}}
{{- end -}}
{{- $cache.redisPassword -}}
{{- end -}}

{{/*
Pod annotations: config checksum (rolls pods when the ConfigMap, externalRedis.url or the
chart-generated Redis password changes), scrape annotations, user annotations.
Usage: include "langscale.podAnnotations" (dict "context" $ "port" 8000 "extra" .Values.gateway.podAnnotations)
*/}}
{{- define "langscale.podAnnotations" -}}
{{- $ := .context -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") $ | sha256sum }}
{{- if include "langscale.redis.createSecret" $ }}
checksum/redis-secret: {{ include (print $.Template.BasePath "/redis-secret.yaml") $ | sha256sum }}
{{- end }}
{{- if and $.Values.metrics.scrapeAnnotations .port }}
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
{{- round (mulf (int64 $w.concurrency) (float64 $w.autoscaling.targetUtilization) 1000) 0 | int64 -}}
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
Gateway terminationGracePeriodSeconds: preStop sleep + drain window + margin, unless set
explicitly (checked in langscale.validate).
*/}}
{{- define "langscale.gateway.terminationGracePeriodSeconds" -}}
{{- $g := .Values.gateway -}}
{{- if kindIs "invalid" $g.terminationGracePeriodSeconds -}}
{{- add $g.preStopSleepSeconds $g.drainTimeoutSeconds $g.drainMarginSeconds -}}
{{- else -}}
{{- $g.terminationGracePeriodSeconds | int64 -}}
{{- end -}}
{{- end -}}

{{/*
In-cluster URL of the gateway Service.
*/}}
{{- define "langscale.gateway.url" -}}
{{- printf "http://%s.%s.svc:%d" (include "langscale.componentName" (dict "context" . "component" "gateway")) .Release.Namespace (int .Values.gateway.service.port) -}}
{{- end -}}

{{/*
The port of the OTLP endpoint: its URL's, else the protocol's default (4317 grpc, 4318 http).
*/}}
{{- define "langscale.otlpPort" -}}
{{- $otlp := .Values.telemetry.otlp -}}
{{- include "langscale.urlPort" $otlp.endpoint | default (ternary "4317" "4318" (eq $otlp.protocol "grpc")) -}}
{{- end -}}

{{/*
NetworkPolicy egress rules every langscale pod needs: DNS, Redis, the OTLP collector, and the
extra rules.
*/}}
{{- define "langscale.networkPolicy.baseEgress" -}}
{{- $ext := .Values.externalRedis -}}
- to:
    {{- toYaml .Values.networkPolicy.dns.to | nindent 4 }}
  ports:
    {{- toYaml .Values.networkPolicy.dns.ports | nindent 4 }}
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
    {{- range $ext.networkPolicyCIDRs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
    {{- with $ext.networkPolicyPeers }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    {{- range (include "langscale.redis.ports" . | splitList ",") }}
    - port: {{ . | int64 }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- if .Values.telemetry.otlp.endpoint }}
# The OTLP collector (telemetry.otlp.endpoint).
- ports:
    - port: {{ include "langscale.otlpPort" . | int64 }}
      protocol: TCP
  {{- with .Values.telemetry.otlp.networkPolicyTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- with .Values.networkPolicy.extraEgress }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The workers' egress ports to the LLM endpoint: networkPolicy.llm.ports, else the port of
llm.openai.baseUrl (443 for https, 80 for http), else 443.
*/}}
{{- define "langscale.llmPorts" -}}
{{- $np := .Values.networkPolicy.llm -}}
{{- if $np.ports -}}
{{- $np.ports | join "," -}}
{{- else -}}
{{- $url := .Values.llm.openai.baseUrl -}}
{{- if $url -}}
{{- include "langscale.urlPort" $url | default (ternary "80" "443" (hasPrefix "http://" $url)) -}}
{{- else -}}
443
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Parse a Kubernetes memory quantity ("256Mi", "1Gi", "512M", "1e9", "268435456") to bytes.
*/}}
{{- define "langscale.quantityBytes" -}}
{{- $q := toString . -}}
{{- $units := dict "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "K" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 -}}
{{- $suffix := regexFind "(Ki|Mi|Gi|Ti|k|K|M|G|T)$" $q -}}
{{- $number := trimSuffix $suffix $q -}}
{{- mulf (float64 $number) (get $units $suffix | default 1) | floor | int64 -}}
{{- end -}}

{{/*
Parse a Redis memory size ("200mb", "1gb", "100m", "1048576") to bytes (Redis: k=1000,
kb=1024, and so on).
*/}}
{{- define "langscale.redisBytes" -}}
{{- $q := lower (toString .) -}}
{{- $units := dict "k" 1000 "kb" 1024 "m" 1000000 "mb" 1048576 "g" 1000000000 "gb" 1073741824 -}}
{{- $suffix := regexFind "(kb|mb|gb|k|m|g|b)$" $q -}}
{{- $number := trimSuffix $suffix $q -}}
{{- mulf (float64 $number) (get $units $suffix | default 1) | floor | int64 -}}
{{- end -}}

{{/*
The bundled Redis's maxmemory in bytes: redis.maxmemory, else maxmemoryRatio × the memory
limit.
*/}}
{{- define "langscale.redis.maxmemoryBytes" -}}
{{- $r := .Values.redis -}}
{{- if $r.maxmemory -}}
{{- include "langscale.redisBytes" $r.maxmemory -}}
{{- else -}}
{{- $limit := include "langscale.quantityBytes" $r.resources.limits.memory | float64 -}}
{{- mulf $limit (float64 $r.maxmemoryRatio) | floor | int64 -}}
{{- end -}}
{{- end -}}

{{/*
The bundled Redis's server and CLI commands.
*/}}
{{- define "langscale.redis.server" -}}
{{- ternary "valkey-server" "redis-server" (eq .Values.redis.flavor "valkey") -}}
{{- end -}}
{{- define "langscale.redis.cli" -}}
{{- ternary "valkey-cli" "redis-cli" (eq .Values.redis.flavor "valkey") -}}
{{- end -}}

{{/*
Pod spec parts every component shares: extra volumes' mounts etc. are rendered by the
templates; this renders scheduling fields. Usage:
include "langscale.scheduling" (dict "context" $ "component" "worker" "values" $w)
*/}}
{{- define "langscale.scheduling" -}}
{{- $v := .values -}}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- include "langscale.topologySpread" (dict "context" $.context "component" $.component "constraints" .) | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
The worker pools, as a JSON list: the default pool (`worker`, when worker.enabled; its
objects keep the names "<fullname>-worker") and each of workerPools, its values deep-merged
over `worker`'s (objects "<fullname>-worker-<name>"). Each item: name, component, values.
Checks: unique names, and a pipeline served by one pool only.
*/}}
{{- define "langscale.workerPools" -}}
{{- if and .Values.redis.enabled (not .Values.redis.auth.existingSecret) -}}
{{- /* Generate the Redis password in the root values before pools copy them. */ -}}
{{- $_ := include "langscale.redis.generatedPassword" . -}}
{{- end -}}
{{- $pools := list -}}
{{- $seen := dict -}}
{{- $served := dict -}}
{{- if .Values.worker.enabled -}}
{{- $pools = append $pools (dict "name" "default" "component" "worker" "values" (omit .Values.worker "enabled")) -}}
{{- range (.Values.worker.pipelines | default .Values.config.pipelines | default "chat=,summarize=,embed=" | splitList ",") -}}
{{- $_ := set $served (regexReplaceAll "=.*$" (trim .) "") "default" -}}
{{- end -}}
{{- end -}}
{{- range .Values.workerPools -}}
{{- if eq .name "default" -}}
{{- fail "langscale: workerPools cannot have a pool named \"default\": that is the chart's `worker` (set worker.* for it)" -}}
{{- end -}}
{{- if hasKey $seen .name -}}
{{- fail (printf "langscale: workerPools has two pools named %q; pool names are unique" .name) -}}
{{- end -}}
{{- $_ := set $seen .name true -}}
{{- $pool := .name -}}
{{- range (.pipelines | splitList ",") -}}
{{- $name := regexReplaceAll "=.*$" (trim .) "" -}}
{{- if and $name (hasKey $served $name) -}}
{{- fail (printf "langscale: pipeline %q is served by pools %q and %q; a pipeline belongs to one pool (its backlog scales that pool)" $name (get $served $name) $pool) -}}
{{- end -}}
{{- $_ := set $served $name $pool -}}
{{- end -}}
{{- $v := mergeOverwrite (deepCopy (omit $.Values.worker "enabled" "pipelines")) (deepCopy (omit . "name")) -}}
{{- $pools = append $pools (dict "name" .name "component" (printf "worker-%s" .name) "values" $v) -}}
{{- end -}}
{{- if not $pools -}}
{{- fail "langscale: no worker pool: worker.enabled is false and workerPools is empty" -}}
{{- end -}}
{{- toJson $pools -}}
{{- end -}}
