{{/* Names, labels and the pieces every pod shares. */}}

{{- define "cc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cc.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "cc.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "cc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: customer-classifier
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "ingest") */}}
{{- define "cc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cc.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "cc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cc.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "cc.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "cc.configName" -}}{{ include "cc.fullname" . }}-config{{- end -}}

{{/* The activity topic's partitions bound the worker count. */}}
{{- define "cc.workerMaxReplicas" -}}
{{- $max := int .Values.worker.keda.maxReplicas -}}
{{- $partitions := int .Values.kafka.partitions.activity -}}
{{- if or (le $max 0) (gt $max $partitions) -}}{{ $partitions }}{{- else -}}{{ $max }}{{- end -}}
{{- end -}}

{{/* Environment of every process: the shared ConfigMap, the database URL and secrets by
     reference; the identity key (required: one secret entry for ingest and classifier). */}}
{{- define "cc.env" -}}
{{- if .Values.postgresql.cnpg.enabled }}
{{- $secret := printf "%s-db-app" (include "cc.fullname" .) }}
- name: DATABASE_USER
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: username}
- name: DATABASE_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: password}
# The operator's own URI is postgresql:// (libpq); the services need the asyncpg dialect.
- name: DATABASE_URL
  value: {{ printf "postgresql+asyncpg://$(DATABASE_USER):$(DATABASE_PASSWORD)@%s-db-rw:%v/%s" (include "cc.fullname" .) .Values.postgresql.port .Values.postgresql.cnpg.database | quote }}
{{- else }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.postgresql.existingSecret }}
      key: {{ .Values.postgresql.urlKey }}
{{- end }}
{{- $identityKey := required "secrets.identityKey: the entry of secrets.existingSecret holding the identity key" .Values.secrets.identityKey }}
{{- range $name := list "INGEST_IDENTITY_KEY" "CLASSIFIER_IDENTITY_KEY" }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.secrets.existingSecret }}
      key: {{ $identityKey }}
{{- end }}
{{- range $name, $key := .Values.secrets.env }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.secrets.existingSecret }}
      key: {{ $key }}
      optional: true
{{- end }}
{{- if .Values.kafka.sasl.existingSecret }}
- name: KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.usernameKey }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.passwordKey }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "cc.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.kafka.tls.caSecret }}
- name: kafka-ca
  mountPath: /etc/kafka-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "cc.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if .Values.kafka.tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.tls.caSecret }}
{{- end }}
{{- end -}}

{{- define "cc.podSpecCommon" -}}
serviceAccountName: {{ include "cc.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* (dict "root" $ "component" "ingest") */}}
{{- define "cc.topologySpread" -}}
{{- $root := .root -}}
{{- $component := .component -}}
{{- range $root.Values.topologySpread }}
- topologyKey: {{ .topologyKey }}
  maxSkew: {{ .maxSkew }}
  whenUnsatisfiable: {{ .whenUnsatisfiable }}
  labelSelector:
    matchLabels:
      {{- include "cc.selectorLabels" (dict "root" $root "component" $component) | nindent 6 }}
{{- end }}
{{- end -}}

{{/* NetworkPolicy pieces: DNS, and (list peers port) for Kafka/PostgreSQL. */}}
{{- define "cc.egressDns" -}}
- to:
    - namespaceSelector: {}
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- end }}
{{- define "cc.egressTo" -}}
{{- $peers := index . 0 -}}
{{- $port := index . 1 -}}
- ports:
    - {port: {{ $port }}, protocol: TCP}
  {{- with $peers }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
uvicorn processes per API pod: the component's `workers`, else its CPU limit
(or request) rounded up, at least 1 ("one per core", as INGEST_WORKERS and
CLASSIFIER_API_WORKERS default to under `make up` and compose).
*/}}
{{- define "cc.apiWorkers" -}}
{{- if .workers -}}
{{- int .workers -}}
{{- else -}}
{{- $resources := .resources | default dict -}}
{{- $cpu := toString (dig "limits" "cpu" (dig "requests" "cpu" "1" $resources) $resources) -}}
{{- if hasSuffix "m" $cpu -}}
{{- max 1 (div (add (trimSuffix "m" $cpu | atoi) 999) 1000) -}}
{{- else -}}
{{- max 1 (int (ceil (float64 $cpu))) -}}
{{- end -}}
{{- end -}}
{{- end -}}
