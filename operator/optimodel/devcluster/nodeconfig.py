"""The configuration files of the local node's parts, rendered from one `NodeLayout` (pure: no I/O).

containerd, the kubelet, kube-proxy and the CNI bridge plugin each take a file; CoreDNS takes its
manifests. Every path a part would otherwise write outside its own folders (runc's state, pod
network namespaces, pod logs, the kubelet's root) is set here to a folder under the node's state
directory, so that stopping the node and removing that directory leaves nothing behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CLUSTER_DOMAIN = "cluster.local"
DNS_SERVICE_IP = "10.96.0.10"
COREDNS_VERSION = "v1.14.7"
COREDNS_IMAGE = f"localhost/coredns:{COREDNS_VERSION}"
# The sandbox image hack/build-images.sh makes from the pause.c of this Kubernetes release.
KUBERNETES_VERSION = "v1.36.3"
PAUSE_IMAGE = f"localhost/optimodel-pause:{KUBERNETES_VERSION}"


@dataclass(frozen=True)
class NodeLayout:
    """Where each part of one node keeps its files, and the addresses it uses."""

    state_dir: Path  # the node's folder: containerd, kubelet, pod logs, configs
    bin_dir: Path  # containerd, runc, kubelet, kube-proxy, ...
    cni_bin_dir: Path  # bridge, host-local, loopback, portmap
    node_name: str
    node_ip: str  # the node's address on the link to the host
    pod_cidr: str  # the pods' subnet behind the node's bridge
    cluster_cidr: str  # kube-proxy: traffic from outside it to a Service is masqueraded
    cgroup_root: str  # every pod's cgroup lives below it, in every hierarchy
    pause_image: str
    ca_cert: Path
    kubelet_cert: Path
    kubelet_key: Path
    containerd_root: Path | None = None  # images and snapshots; None: under containerd_dir

    @property
    def image_store(self) -> Path:
        """containerd's root: its content store, snapshots and metadata."""
        return self.containerd_root or self.containerd_dir / "root"

    @property
    def containerd_dir(self) -> Path:
        """containerd's own folder (its root, unless `containerd_root` names another)."""
        return self.state_dir / "containerd"

    @property
    def containerd_state(self) -> Path:
        """containerd's state (sockets, runc's state, pod network namespaces): in the node's own
        /run, a tmpfs only the node sees. Unix socket paths must stay short, which a state
        directory under a test's temporary folder is not."""
        return Path("/run/containerd")

    @property
    def containerd_socket(self) -> Path:
        """containerd's gRPC socket: the kubelet's CRI endpoint and ctr's address (in the node)."""
        return self.containerd_state / "containerd.sock"

    @property
    def kubelet_dir(self) -> Path:
        """The kubelet's --root-dir (volumes, plugins, checkpoints), as the node sees it: the node's
        /var is `var/` of its state directory, and the kubelet's sockets need a short path."""
        return Path("/var/lib/kubelet")

    @property
    def pod_logs_dir(self) -> Path:
        """Container logs, <namespace>_<pod>_<uid>/<container>/<restart>.log."""
        return self.state_dir / "pod-logs"

    @property
    def config_dir(self) -> Path:
        """The rendered configuration files."""
        return self.state_dir / "config"

    @property
    def cni_conf_dir(self) -> Path:
        """The CNI configuration containerd reads."""
        return self.config_dir / "cni"


def containerd_config(layout: NodeLayout) -> str:
    """containerd's config.toml (version 3)."""
    d = layout.containerd_state
    runc_options = {
        "BinaryName": str(layout.bin_dir / "runc"),
        "Root": str(d / "runc"),
        "SystemdCgroup": False,
    }
    lines = [
        "version = 3",
        f"root = {_toml(layout.image_store)}",
        f"state = {_toml(d / 'state')}",
        # Snapshotters and plugins this node has no use for; btrfs/devmapper are not compiled in.
        'disabled_plugins = ["io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.blockfile",'
        ' "io.containerd.snapshotter.v1.erofs", "io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp",'
        ' "io.containerd.internal.v1.tracing"]',
        "",
        "[grpc]",
        f"  address = {_toml(layout.containerd_socket)}",
        "[ttrpc]",
        f"  address = {_toml(d / 'containerd.sock.ttrpc')}",
        "[debug]",
        f"  address = {_toml(d / 'debug.sock')}",
        "[metrics]",
        '  address = ""',
        "",
        "[plugins.'io.containerd.internal.v1.opt']",
        f"  path = {_toml(layout.containerd_dir / 'opt')}",
        "[plugins.'io.containerd.grpc.v1.cri']",
        '  stream_server_address = "127.0.0.1"',
        '  stream_server_port = "0"',
        "[plugins.'io.containerd.cri.v1.images']",
        '  snapshotter = "overlayfs"',
        "[plugins.'io.containerd.cri.v1.images'.pinned_images]",
        f"  sandbox = {_toml(layout.pause_image)}",
        "[plugins.'io.containerd.cri.v1.runtime']",
        # This VM has no CAP_SYS_RESOURCE: lowering a process's oom_score_adj is refused, and runc
        # fails every sandbox unless containerd keeps the score at or above its own.
        "  restrict_oom_score_adj = true",
        "  netns_mounts_under_state_dir = true",
        "[plugins.'io.containerd.cri.v1.runtime'.cni]",
        f"  bin_dirs = [{_toml(layout.cni_bin_dir)}]",
        f"  conf_dir = {_toml(layout.cni_conf_dir)}",
        "  max_conf_num = 1",
        "[plugins.'io.containerd.cri.v1.runtime'.containerd]",
        '  default_runtime_name = "runc"',
        "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]",
        '  runtime_type = "io.containerd.runc.v2"',
        "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]",
        *(f"  {key} = {_toml(value)}" for key, value in runc_options.items()),
    ]
    return "\n".join(lines) + "\n"


def cni_config(layout: NodeLayout) -> str:
    """The pod network: a bridge on the node with the pods' gateway address, host-local addresses."""
    config = {
        "cniVersion": "1.0.0",
        "name": "optimodel",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,  # pods reach nothing outside this machine; the host routes to them
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": layout.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(layout.state_dir / "cni-ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(config, indent=2) + "\n"


def kubelet_config(layout: NodeLayout, resolv_conf: Path) -> str:
    """The KubeletConfiguration."""
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": layout.node_ip,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(layout.ca_cert)},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(layout.kubelet_cert),
        "tlsPrivateKeyFile": str(layout.kubelet_key),
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": layout.cgroup_root,
        # cgroup v1 is deprecated from 1.35 on and refused unless said so; this VM has no v2.
        "failCgroupV1": False,
        "failSwapOn": False,
        "clusterDNS": [DNS_SERVICE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": str(resolv_conf),
        "podLogsDir": str(layout.pod_logs_dir),
        # The images exist only here (no registry to pull them back from): never collect them, and
        # evict pods only when the machine is really short of memory or disk.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "serializeImagePulls": False,
        "maxPods": 110,
        "nodeStatusReportFrequency": "10s",
        "nodeStatusUpdateFrequency": "2s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "shutdownGracePeriod": "0s",
        "containerLogMaxSize": "10Mi",
    }
    return yaml.safe_dump(config, sort_keys=False)


def kube_proxy_config(layout: NodeLayout, kubeconfig: Path) -> str:
    """The KubeProxyConfiguration: iptables mode, NodePorts on the node's address."""
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": layout.node_name,
        "clusterCIDR": layout.cluster_cidr,
        "bindAddress": layout.node_ip,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "nodePortAddresses": [f"{layout.node_ip}/32"],
        # Leave the kernel's conntrack limits alone: they are global, not the node's own.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }
    return yaml.safe_dump(config, sort_keys=False)


def resolv_conf() -> str:
    """The resolv.conf the kubelet gives pods with `dnsPolicy: Default`: no name server at all, as
    nothing outside the cluster can be reached; ClusterFirst pods get the cluster DNS instead."""
    return "options ndots:1\n"


def coredns_manifests() -> list[dict[str, Any]]:
    """CoreDNS in kube-system behind the cluster DNS Service, as kubeadm deploys it, minus the
    upstream forwarder (this machine reaches no outside name server)."""
    labels = {"k8s-app": "kube-dns"}
    corefile = (
        ".:53 {\n"
        "    errors\n"
        "    health\n"
        "    ready\n"
        f"    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{\n"
        "        pods insecure\n"
        "        fallthrough in-addr.arpa ip6.arpa\n"
        "        ttl 30\n"
        "    }\n"
        "    cache 30\n"
        "    loop\n"
        "    reload\n"
        "}\n"
    )
    meta = {"namespace": "kube-system"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", **meta}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coredns", **meta},
            "data": {"Corefile": corefile},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "coredns", **meta, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "priorityClassName": "system-cluster-critical",
                        "dnsPolicy": "Default",
                        # Port 53 without any capability: the pod's own network namespace lets
                        # unprivileged processes bind low ports (a sysctl the kubelet deems safe).
                        "securityContext": {"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]},
                        "containers": [
                            {
                                "name": "coredns",
                                "image": COREDNS_IMAGE,
                                "imagePullPolicy": "Never",
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "ports": [
                                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                ],
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "32Mi"},
                                    "limits": {"memory": "128Mi"},
                                },
                                "securityContext": {
                                    "runAsUser": 65532,
                                    "runAsNonRoot": True,
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]},
                                    "seccompProfile": {"type": "RuntimeDefault"},
                                },
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
                                "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 10},
                                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", **meta, "labels": labels},
            "spec": {
                "selector": labels,
                "clusterIP": DNS_SERVICE_IP,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        },
    ]


def _toml(value: object) -> str:
    """A TOML scalar: JSON's string and boolean syntax are valid TOML for the values used here."""
    return json.dumps(str(value) if isinstance(value, Path) else value)
