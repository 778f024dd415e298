{{/* Plain settings of every process (also inlined into the hook Job, which runs before the ConfigMap exists). */}}
{{- define "cc.configData" -}}
KAFKA_BOOTSTRAP_SERVERS: {{ .Values.kafka.bootstrapServers | quote }}
KAFKA_ACTIVITY_TOPIC: {{ .Values.kafka.topics.activity | quote }}
KAFKA_CLASS_CHANGES_TOPIC: {{ .Values.kafka.topics.classChanges | quote }}
KAFKA_DLQ_TOPIC: {{ .Values.kafka.topics.dlq | quote }}
KAFKA_SECURITY_PROTOCOL: {{ .Values.kafka.securityProtocol | quote }}
{{- with .Values.kafka.sasl.mechanism }}
KAFKA_SASL_MECHANISM: {{ . | quote }}
{{- end }}
{{- if .Values.kafka.tls.caSecret }}
KAFKA_SSL_CAFILE: {{ printf "/etc/kafka-ca/%s" .Values.kafka.tls.caKey | quote }}
{{- end }}
CLASSIFIER_CONSUMER_GROUP: {{ .Values.kafka.consumerGroup | quote }}
CLASSIFIER_ACTIVITY_PARTITIONS: {{ .Values.kafka.partitions.activity | quote }}
CLASSIFIER_CLASS_CHANGES_PARTITIONS: {{ .Values.kafka.partitions.classChanges | quote }}
CLASSIFIER_DLQ_PARTITIONS: {{ .Values.kafka.partitions.dlq | quote }}
CLASSIFIER_TOPIC_REPLICATION_FACTOR: {{ .Values.kafka.replicationFactor | quote }}
CLASSIFIER_DB_POOL_SIZE: {{ .Values.postgresql.poolSize | quote }}
CLASSIFIER_LOG_LEVEL: {{ .Values.env.LOG_LEVEL | quote }}
INGEST_LOG_LEVEL: {{ .Values.env.LOG_LEVEL | quote }}
{{- range $key, $value := .Values.env }}
{{- if ne $key "LOG_LEVEL" }}
{{ $key }}: {{ $value | quote }}
{{- end }}
{{- end }}
{{- end -}}
