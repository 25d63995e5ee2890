{{- define "perigee.name" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "perigee.labels" -}}
app.kubernetes.io/name: perigee
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "perigee.selector" -}}
app.kubernetes.io/name: perigee
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "perigee.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "perigee.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
The NetworkPolicy of workspace pods (the same in the perigee and workspace-provider
charts): ingress only from outside the cluster (a developer's direct WebRTC path), never
from another workspace or pod; egress to DNS, to the edges (this release's pods) and to
the internet, never to the cluster's internal ranges or cloud metadata.
*/}}
{{- define "perigee.workspacePolicy" -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ .name }}-workspaces
  namespace: {{ .ns }}
  labels:
    {{- .labels | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      app.kubernetes.io/name: perigee-workspace
  policyTypes: ["Ingress", "Egress"]
  ingress:
    - from:
        - ipBlock:
            cidr: 0.0.0.0/0
            except:
              {{- range (concat .policy.clusterCIDRs .policy.metadataCIDRs) }}
              - {{ . }}
              {{- end }}
  egress:
    - ports:
        {{- range .policy.dnsPorts }}
        - port: {{ . }}
          protocol: UDP
        - port: {{ . }}
          protocol: TCP
        {{- end }}
    - to:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ .edgesNamespace }}
          podSelector:
            matchLabels:
              {{- .edges | nindent 14 }}
    - to:
        - ipBlock:
            cidr: 0.0.0.0/0
            except:
              {{- range (concat .policy.clusterCIDRs .policy.metadataCIDRs) }}
              - {{ . }}
              {{- end }}
{{- end -}}
