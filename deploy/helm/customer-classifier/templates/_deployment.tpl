{{/*
One Deployment of the shared image.
(dict "root" $ "component" "ingest" "values" .Values.ingest "command" (list ...)
      "port" 8001 "portName" "http" "probePath" "/healthz" "readyPath" "/readyz" "autoscaled" true)
*/}}
{{- define "cc.deployment" -}}
{{- $root := .root -}}
{{- $v := .values -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "cc.fullname" $root }}-{{ .component }}
  labels:
    {{- include "cc.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  {{- if not .autoscaled }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "cc.selectorLabels" (dict "root" $root "component" .component) | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  template:
    metadata:
      labels:
        {{- include "cc.selectorLabels" (dict "root" $root "component" .component) | nindent 8 }}
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    spec:
      {{- include "cc.podSpecCommon" $root | nindent 6 }}
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      topologySpreadConstraints:
        {{- include "cc.topologySpread" (dict "root" $root "component" .component) | trim | nindent 8 }}
      containers:
        - name: {{ .component }}
          image: {{ include "cc.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command:
            {{- toYaml .command | nindent 12 }}
          ports:
            - name: {{ .portName }}
              containerPort: {{ .port }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "cc.configName" $root }}
          env:
            {{- include "cc.env" $root | trim | nindent 12 }}
            {{- range $key, $value := $v.env }}
            - name: {{ $key }}
              value: {{ $value | quote }}
            {{- end }}
            {{- with .extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          startupProbe:
            httpGet:
              path: {{ .probePath }}
              port: {{ .portName }}
            periodSeconds: 2
            failureThreshold: 60
          livenessProbe:
            httpGet:
              path: {{ .probePath }}
              port: {{ .portName }}
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 3
          readinessProbe:
            httpGet:
              path: {{ .readyPath }}
              port: {{ .portName }}
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 2
          {{- if .preStopSleep }}
          lifecycle:
            # Let endpoints drop the pod before uvicorn stops accepting.
            preStop:
              sleep:
                seconds: {{ .preStopSleep }}
          {{- end }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            {{- include "cc.volumeMounts" $root | nindent 12 }}
      volumes:
        {{- include "cc.volumes" $root | nindent 8 }}
{{- end -}}
