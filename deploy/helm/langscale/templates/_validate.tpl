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
{{- if not $ext.existingSecretUrlKey -}}
{{- if and $ext.url $ext.host -}}
{{- fail "langscale: set either externalRedis.url or externalRedis.host, not both" -}}
{{- end -}}
{{- if not (or $ext.url $ext.host) -}}
{{- fail "langscale: externalRedis.enabled needs externalRedis.url, externalRedis.host, or externalRedis.existingSecret + existingSecretUrlKey" -}}
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

{{- /* Gateway: the grace period must outlast the preStop sleep. */ -}}
{{- if le (int64 .Values.gateway.terminationGracePeriodSeconds) (int64 .Values.gateway.preStopSleepSeconds) -}}
{{- fail (printf "langscale: gateway.terminationGracePeriodSeconds (%d) must be larger than gateway.preStopSleepSeconds (%d), or the server is killed before it can finish in-flight requests" (int64 .Values.gateway.terminationGracePeriodSeconds) (int64 .Values.gateway.preStopSleepSeconds)) -}}
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

{{- /* Secrets. */ -}}
{{- if and .Values.auth.enabled (not .Values.auth.existingSecret) -}}
{{- fail "langscale: auth.enabled needs auth.existingSecret: an existing Secret holding the API keys file (key auth.existingSecretKey)" -}}
{{- end -}}
{{- end -}}
