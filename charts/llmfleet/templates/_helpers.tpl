{{- define "llmfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llmfleet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "llmfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llmfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "llmfleet.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "llmfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: llmfleet
{{- end }}

{{- define "llmfleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llmfleet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "llmfleet.peeringName" -}}
{{- default (include "llmfleet.fullname" .) .Values.operator.peering.name }}
{{- end }}

{{- define "llmfleet.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- /* The oldest Kubernetes llmfleet runs on: its CRDs' CEL validation rules
(x-kubernetes-validations) are GA in 1.29. */ -}}
{{- define "llmfleet.minKubeVersion" -}}1.29.0{{- end }}

{{- /* Fails when the Kubernetes version given (e.g. "v1.27.3") is older than
llmfleet.minKubeVersion; renders nothing otherwise. */ -}}
{{- define "llmfleet.checkKubeVersion" -}}
{{- $min := include "llmfleet.minKubeVersion" dict }}
{{- if not (semverCompare (printf ">=%s-0" $min) .) }}
{{- fail (printf "llmfleet needs Kubernetes >= %s (kubeVersion: its CRDs use CEL validation rules); the cluster runs %s" $min .) }}
{{- end }}
{{- end }}

{{- /* Namespaces where the operator writes the fleet (Roles and RoleBindings): rbac.fleetNamespaces,
else operator.watchNamespaces, else the release namespace. A JSON list. */ -}}
{{- define "llmfleet.fleetNamespaces" -}}
{{- $ns := .Values.rbac.fleetNamespaces | default .Values.operator.watchNamespaces | default (list .Release.Namespace) }}
{{- toJson (uniq $ns) }}
{{- end }}

{{- /* Namespaces kubeconfig Secrets are read from: operator.kubeconfigSecretNamespaces, else the
release namespace (the operator's own). A JSON list. */ -}}
{{- define "llmfleet.secretNamespaces" -}}
{{- toJson (uniq (.Values.operator.kubeconfigSecretNamespaces | default (list .Release.Namespace))) }}
{{- end }}

{{- /* Namespaces of the MachineDeployments scaled: rbac.nodePools.clusterAPINamespaces, else the
fleet namespaces. A JSON list. */ -}}
{{- define "llmfleet.clusterAPINamespaces" -}}
{{- $ns := .Values.rbac.nodePools.clusterAPINamespaces | default (include "llmfleet.fleetNamespaces" . | fromJsonArray) }}
{{- toJson (uniq $ns) }}
{{- end }}

{{- /* Fails when a namespace list of the chart's Roles names kube-system and rbac.allowKubeSystem
is false: the operator gets no right there unless a value asks for it. */ -}}
{{- define "llmfleet.checkKubeSystem" -}}
{{- if not .Values.rbac.allowKubeSystem }}
{{- $checks := list
  (list "fleet namespaces (rbac.fleetNamespaces, else operator.watchNamespaces, else the release namespace)" (include "llmfleet.fleetNamespaces" . | fromJsonArray))
  (list "kubeconfig Secret namespaces (operator.kubeconfigSecretNamespaces, else the release namespace)" (include "llmfleet.secretNamespaces" . | fromJsonArray))
  (list "Cluster API namespaces (rbac.nodePools.clusterAPINamespaces)" (include "llmfleet.clusterAPINamespaces" . | fromJsonArray)) }}
{{- range $checks }}
{{- if has "kube-system" (index . 1) }}
{{- fail (printf "the %s include kube-system: the operator would get rights there; set rbac.allowKubeSystem=true if that is what you want" (index . 0)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
