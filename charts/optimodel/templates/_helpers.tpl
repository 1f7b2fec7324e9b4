{{/* Chart name, overridable with nameOverride. */}}
{{- define "optimodel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's resources: <release>-<chart>, or the release name when it contains the chart name. */}}
{{- define "optimodel.fullname" -}}
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

{{/* Selector labels: stable across upgrades. */}}
{{- define "optimodel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "optimodel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels of every resource of the chart. */}}
{{- define "optimodel.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "optimodel.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: optimodel
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Name of the operator's ServiceAccount. */}}
{{- define "optimodel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "optimodel.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An image reference from {repository, tag}; the tag defaults to the chart's appVersion. */}}
{{- define "optimodel.image" -}}
{{- $image := index . 0 }}
{{- $root := index . 1 }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}

{{/*
What the operator does to namespaced resources, from operator/optimodel/controller (kube.py,
handlers.py) and kopf. Used by the ClusterRole (all namespaces) or by one Role per watched namespace.
*/}}
{{- define "optimodel.namespacedRules" -}}
# OptimizedModels: kopf lists and watches them and patches annotations (handler progress) and
# finalizers; the reconciler reads one with get.
- apiGroups: ["optimodel.io"]
  resources: ["optimizedmodels"]
  verbs: ["get", "list", "watch", "patch"]
# Status is written through the status subresource (merge patch).
- apiGroups: ["optimodel.io"]
  resources: ["optimizedmodels/status"]
  verbs: ["patch"]
# Children carry an owner reference with blockOwnerDeletion: clusters with the
# OwnerReferencesPermissionEnforcement admission plugin require this to set it.
- apiGroups: ["optimodel.io"]
  resources: ["optimizedmodels/finalizers"]
  verbs: ["update"]
# Optimization Jobs: created once, never changed (owner references delete them; a TTL cleans up);
# watched to re-reconcile the owner when one finishes.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create"]
# A finished Job's pods are listed (by the job-name label) to read their termination message.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
# Serving Deployments: server-side apply (patch; create when the apply makes a new object);
# watched to follow rollouts.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Serving Services: read to check that an existing one is the operator's own, then server-side apply.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "create", "patch"]
# Serving autoscalers (spec.serving.autoscaling): read to find one no longer wanted, server-side
# applied, and deleted (the one observed, by uid) when autoscaling is removed from the spec.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "create", "patch", "delete"]
# S3 credentials: the Secret named by spec.artifacts.s3.credentialsSecret is read, never listed.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# Events about OptimizedModels (kopf posts them with create).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/*
Cluster-scoped reads: kopf's CRDs (list/watch, to notice the OptimizedModel CRD being added,
changed or removed) and, when watching a list of namespaces, namespaces (list/watch, to notice one
being created or deleted); without them kopf falls back to its startup view and logs a warning.
The operator itself gets namespaces, for deletionPolicy Delete (below).
*/}}
{{- define "optimodel.clusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
# deletionPolicy Delete: when the credentials Secret is gone, whether its namespace is being deleted
# (the Secret cannot come back, so the results are retained rather than blocking the namespace).
{{- if .Values.watchNamespaces }}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- else }}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get"]
{{- end }}
{{- end }}

{{/* OPTIMODEL_RUN_AS_USER: a UID, or `none` to leave the user to the image. */}}
{{- define "optimodel.runAsUser" -}}
{{- $uid := .Values.job.runAsUser }}
{{- if kindIs "string" $uid }}
{{- if ne $uid "none" }}{{ fail "job.runAsUser: a UID or none" }}{{ end }}
{{- $uid }}
{{- else }}
{{- int64 $uid }}
{{- end }}
{{- end }}
