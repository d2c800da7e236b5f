{{/*
Cross-field checks that values.schema.json cannot express. Each failure names the values to
change. Included once, from configmap.yaml (always rendered).
*/}}
{{- define "langscale.validate" -}}
{{- $w := .Values.worker -}}
{{- $as := $w.autoscaling -}}
{{- $ext := .Values.externalRedis -}}

{{- /* Redis: exactly one of bundled or external. */ -}}
{{- if and .Values.redis.enabled $ext.enabled -}}
{{- fail "langscale: redis.enabled and externalRedis.enabled are both true; choose exactly one: the bundled Redis (redis.enabled, for trying it out) or your own (externalRedis.enabled, for production)" -}}
{{- end -}}
{{- if not (or .Values.redis.enabled $ext.enabled) -}}
{{- fail "langscale: no Redis configured; set exactly one of redis.enabled=true (bundled, for trying it out) or externalRedis.enabled=true with externalRedis.url, externalRedis.host or externalRedis.existingSecret + existingSecretUrlKey" -}}
{{- end -}}
{{- if $ext.enabled -}}
{{- if and $ext.existingSecretUrlKey (not $ext.existingSecret) -}}
{{- fail "langscale: externalRedis.existingSecretUrlKey is set but externalRedis.existingSecret is empty" -}}
{{- end -}}
{{- if and $ext.existingSecretPasswordKey (not $ext.existingSecret) -}}
{{- fail "langscale: externalRedis.existingSecretPasswordKey is set but externalRedis.existingSecret is empty" -}}
{{- end -}}
{{- if not (or $ext.existingSecretUrlKey $ext.sentinel.enabled $ext.cluster.enabled) -}}
{{- if and $ext.url $ext.host -}}
{{- fail "langscale: set either externalRedis.url or externalRedis.host, not both" -}}
{{- end -}}
{{- if not (or $ext.url $ext.host) -}}
{{- fail "langscale: externalRedis.enabled needs externalRedis.url, externalRedis.host, externalRedis.existingSecret + existingSecretUrlKey, or externalRedis.sentinel" -}}
{{- end -}}
{{- if and $ext.existingSecret (not $ext.existingSecretPasswordKey) (not $ext.url) -}}
{{- fail "langscale: externalRedis.existingSecret is set but neither existingSecretPasswordKey nor existingSecretUrlKey says which key to read" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* Worker timeouts: the pod must live through the whole drain window. */ -}}
{{- $minGrace := add $w.drainTimeoutSeconds $w.drainMarginSeconds -}}
{{- if not (kindIs "invalid" $w.terminationGracePeriodSeconds) -}}
{{- if lt (int64 $w.terminationGracePeriodSeconds) (int64 $minGrace) -}}
{{- fail (printf "langscale: worker.terminationGracePeriodSeconds (%d) is smaller than worker.drainTimeoutSeconds + worker.drainMarginSeconds (%d + %d = %d): Kubernetes would kill workers in the middle of their drain; raise it or leave it null to derive it" (int64 $w.terminationGracePeriodSeconds) (int64 $w.drainTimeoutSeconds) (int64 $w.drainMarginSeconds) (int64 $minGrace)) -}}
{{- end -}}
{{- end -}}
{{- if and $w.requireDrainCoversJobTimeout (gt (int64 $w.jobTimeoutSeconds) (int64 $w.drainTimeoutSeconds)) -}}
{{- fail (printf "langscale: worker.jobTimeoutSeconds (%d) is larger than worker.drainTimeoutSeconds (%d): a job started just before shutdown could not finish within the drain window; raise drainTimeoutSeconds or set worker.requireDrainCoversJobTimeout=false" (int64 $w.jobTimeoutSeconds) (int64 $w.drainTimeoutSeconds)) -}}
{{- end -}}

{{- /* Gateway: the grace period must cover preStop sleep + drain + margin. */ -}}
{{- $g := .Values.gateway -}}
{{- $gatewayMin := add $g.preStopSleepSeconds $g.drainTimeoutSeconds $g.drainMarginSeconds -}}
{{- if not (kindIs "invalid" $g.terminationGracePeriodSeconds) -}}
{{- if lt (int64 $g.terminationGracePeriodSeconds) (int64 $gatewayMin) -}}
{{- fail (printf "langscale: gateway.terminationGracePeriodSeconds (%d) is smaller than gateway.preStopSleepSeconds + gateway.drainTimeoutSeconds + gateway.drainMarginSeconds (%d + %d + %d = %d): Kubernetes would kill the gateway before in-flight requests and streams finish; raise it or leave it null to derive it" (int64 $g.terminationGracePeriodSeconds) (int64 $g.preStopSleepSeconds) (int64 $g.drainTimeoutSeconds) (int64 $g.drainMarginSeconds) (int64 $gatewayMin)) -}}
{{- end -}}
{{- end -}}

{{- /* Autoscaling bounds and target. */ -}}
{{- if and $as.enabled (gt (int64 $as.minReplicas) (int64 $as.maxReplicas)) -}}
{{- fail (printf "langscale: worker.autoscaling.minReplicas (%d) is larger than worker.autoscaling.maxReplicas (%d)" (int64 $as.minReplicas) (int64 $as.maxReplicas)) -}}
{{- end -}}
{{- if and .Values.gateway.autoscaling.enabled (gt (int64 .Values.gateway.autoscaling.minReplicas) (int64 .Values.gateway.autoscaling.maxReplicas)) -}}
{{- fail (printf "langscale: gateway.autoscaling.minReplicas (%d) is larger than gateway.autoscaling.maxReplicas (%d)" (int64 .Values.gateway.autoscaling.minReplicas) (int64 .Values.gateway.autoscaling.maxReplicas)) -}}
{{- end -}}
{{- if and $as.enabled (eq $as.kind "keda") (eq $as.keda.trigger "prometheus") (not $as.keda.prometheusServerAddress) -}}
{{- fail "langscale: worker.autoscaling.keda.trigger=prometheus needs worker.autoscaling.keda.prometheusServerAddress (e.g. http://prometheus-operated.monitoring:9090)" -}}
{{- end -}}

{{- $tu := float64 $as.targetUtilization -}}
{{- if or (le $tu 0.0) (gt $tu 1.0) -}}
{{- fail (printf "langscale: worker.autoscaling.targetUtilization (%v) must be above 0 and at most 1, e.g. 0.8" $as.targetUtilization) -}}
{{- end -}}
{{- if and $as.enabled (eq $as.kind "hpa") (eq (int64 $as.minReplicas) 0) -}}
{{- fail "langscale: worker.autoscaling.minReplicas=0 needs worker.autoscaling.kind=keda: an HPA cannot scale to zero (the API server refuses minReplicas 0 without the HPAScaleToZero alpha feature gate); set minReplicas to 1 or more, or use KEDA" -}}
{{- end -}}
{{- $k := $as.keda -}}
{{- if and (ne (toString $k.activationThreshold) "") (not (regexMatch "^[0-9]+(\\.[0-9]+)?$" (toString $k.activationThreshold))) -}}
{{- fail (printf "langscale: worker.autoscaling.keda.activationThreshold (%v) must be a number of jobs, e.g. 5, or empty" $k.activationThreshold) -}}
{{- end -}}
{{- with $k.authenticationRef -}}
{{- if not .name -}}
{{- fail "langscale: worker.autoscaling.keda.authenticationRef needs a name: {name: my-trigger-auth, kind: TriggerAuthentication}" -}}
{{- end -}}
{{- end -}}
{{- with $k.fallback -}}
{{- if not (and (hasKey . "failureThreshold") (hasKey . "replicas")) -}}
{{- fail "langscale: worker.autoscaling.keda.fallback needs failureThreshold and replicas, e.g. {failureThreshold: 3, replicas: 4}" -}}
{{- end -}}
{{- end -}}

{{- /* Secrets. */ -}}
{{- if and .Values.auth.enabled (not .Values.auth.existingSecret) -}}
{{- fail "langscale: auth.enabled needs auth.existingSecret: an existing Secret holding the API keys file (key auth.existingSecretKey)" -}}
{{- end -}}
{{- if and .Values.auth.enabled .Values.tests.enabled (not .Values.tests.apiKeyExistingSecret) -}}
{{- fail "langscale: auth.enabled with tests.enabled needs tests.apiKeyExistingSecret: the `helm test` pod must send an API key the gateway accepts (a Secret with the key in tests.apiKeyExistingSecretKey); or set tests.enabled=false" -}}
{{- end -}}

{{- /* External Redis: the NetworkPolicy must open the port the URL uses. */ -}}
{{- if and $ext.enabled $ext.existingSecretUrlKey .Values.networkPolicy.enabled (kindIs "invalid" $ext.port) -}}
{{- fail "langscale: externalRedis.existingSecretUrlKey: the chart cannot read the port of the URL inside your Secret, and the NetworkPolicy egress must open it; set externalRedis.port (e.g. 6380 for rediss://...:6380, 6379 for redis://...)" -}}
{{- end -}}
{{- if $ext.cluster.enabled -}}
{{- if $ext.sentinel.enabled -}}
{{- fail "langscale: externalRedis.cluster.enabled and externalRedis.sentinel.enabled are both true; a Redis Cluster fails over by itself: choose one" -}}
{{- end -}}
{{- if not (or $ext.cluster.nodes $ext.url $ext.existingSecretUrlKey) -}}
{{- fail "langscale: externalRedis.cluster.enabled needs externalRedis.cluster.nodes (e.g. [clustercfg.my-redis.abc123.use1.cache.amazonaws.com:6379]), or a redis+cluster:// URL in externalRedis.url or in existingSecret + existingSecretUrlKey" -}}
{{- end -}}
{{- if and $ext.url (not (regexMatch "^rediss?\\+cluster://" $ext.url)) -}}
{{- fail "langscale: externalRedis.cluster.enabled needs a redis+cluster:// (or rediss+cluster://) externalRedis.url" -}}
{{- end -}}
{{- if and $ext.cluster.nodes (or $ext.url $ext.host $ext.existingSecretUrlKey) -}}
{{- fail "langscale: externalRedis.cluster.enabled builds the URL from cluster.nodes; leave externalRedis.url, externalRedis.host and externalRedis.existingSecretUrlKey empty" -}}
{{- end -}}
{{- if ne (int $ext.database) 0 -}}
{{- fail "langscale: a Redis Cluster has only database 0; set externalRedis.database=0" -}}
{{- end -}}
{{- end -}}
{{- if and $ext.url (regexMatch "^rediss?\\+cluster://" $ext.url) (not $ext.cluster.enabled) -}}
{{- fail "langscale: externalRedis.url is a redis+cluster:// URL; set externalRedis.cluster.enabled=true too (it sets LANGSCALE_REDIS_PARTITIONS from cluster.partitions)" -}}
{{- end -}}
{{- if $ext.sentinel.enabled -}}
{{- if not $ext.sentinel.hosts -}}
{{- fail "langscale: externalRedis.sentinel.enabled needs externalRedis.sentinel.hosts, e.g. [sentinel-0.redis:26379, sentinel-1.redis:26379]" -}}
{{- end -}}
{{- if or $ext.url $ext.host $ext.existingSecretUrlKey -}}
{{- fail "langscale: externalRedis.sentinel.enabled builds the URL from sentinel.hosts; leave externalRedis.url, externalRedis.host and externalRedis.existingSecretUrlKey empty" -}}
{{- end -}}
{{- end -}}

{{- /* CIDRs (the API server would refuse them after the render). */ -}}
{{- $cidr := "^((((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/(3[0-2]|[12]?[0-9]))|([0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))$" -}}
{{- range $i, $c := $ext.networkPolicyCIDRs -}}
{{- if not (regexMatch $cidr (toString $c)) -}}
{{- fail (printf "langscale: externalRedis.networkPolicyCIDRs[%d] (%q) is not a CIDR; write an address with a prefix length, e.g. 10.20.0.0/16 or fd00::/8" $i (toString $c)) -}}
{{- end -}}
{{- end -}}
{{- range $i, $c := .Values.networkPolicy.llm.cidrs -}}
{{- if not (regexMatch $cidr (toString $c)) -}}
{{- fail (printf "langscale: networkPolicy.llm.cidrs[%d] (%q) is not a CIDR; write an address with a prefix length, e.g. 203.0.113.0/24 or 0.0.0.0/0" $i (toString $c)) -}}
{{- end -}}
{{- end -}}

{{- /* Bundled Redis: maxmemory must leave room for an AOF rewrite under the memory limit. */ -}}
{{- if .Values.redis.enabled -}}
{{- $r := .Values.redis -}}
{{- $limit := include "langscale.quantityBytes" $r.resources.limits.memory | int64 -}}
{{- $maxmemory := include "langscale.redis.maxmemoryBytes" . | int64 -}}
{{- if gt (mul $maxmemory 4) (mul $limit 3) -}}
{{- fail (printf "langscale: redis.maxmemory (%v = %d bytes) is more than 75%% of redis.resources.limits.memory (%s = %d bytes): an AOF rewrite forks Redis and copy-on-write can then exceed the limit and get it OOM-killed; lower redis.maxmemory (or leave it empty: %v of the limit) or raise the limit" ($r.maxmemory | default "derived") $maxmemory $r.resources.limits.memory $limit $r.maxmemoryRatio) -}}
{{- end -}}
{{- end -}}
{{- end -}}
