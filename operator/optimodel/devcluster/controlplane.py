"""Start, inspect and stop a local cluster: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, and one node (containerd, kubelet, kube-proxy; node.py) with CoreDNS, each a
process whose id is recorded in the state directory.

Layout of a state directory: `cluster.json` (ports, network, process records), `pki/`,
`kubeconfig` (admin), `kubeconfigs/` (components and minted users), `logs/`, `etcd/`, `node/`
(the node's configuration, containerd's images, the kubelet's root, pod logs).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from optimodel.devcluster import network, objectstore, procs
from optimodel.devcluster.kubeconfig import write_kubeconfig
from optimodel.devcluster.network import NetworkConfig
from optimodel.devcluster.node import Node, NodeError, missing_node_binaries
from optimodel.devcluster.nodeconfig import PAUSE_IMAGE, NodeLayout, coredns_manifests
from optimodel.devcluster.pki import Pki

NODE_NAME = "optimodel-node"
SERVICE_CIDR = "10.96.0.0/12"
SERVICE_IP = "10.96.0.1"
# The one user whose requests the API server's audit log records (`ControlPlane.audit_log`).
AUDITED_USER = "optimodel-audited"
CONTROLLERS = (
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "job-controller",
    "deployment-controller",
    "replicaset-controller",
    "endpointslice-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "ttl-after-finished-controller",
    # Removes the node's not-ready taint once the kubelet reports Ready, and marks a node whose
    # kubelet stopped reporting NotReady.
    "node-lifecycle-controller",
)
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the optimodel package
_REPO_DEV = _PACKAGE_ROOT.parent / ".dev"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


class ClusterError(RuntimeError):
    """The cluster could not be started or reached."""


def default_bin_dir() -> Path:
    """Where `make k8s-bins` (hack/build-k8s.sh, hack/build-node.sh) links the binaries; the CNI
    plugins are in `cni/bin` beside it. OPTIMODEL_K8S_BIN overrides."""
    return Path(os.environ.get("OPTIMODEL_K8S_BIN", str(_REPO_DEV / "bin")))


def default_images_dir() -> Path:
    """Where `make images` (hack/build-images.sh) links the image archives the node imports;
    OPTIMODEL_IMAGES_DIR overrides."""
    return Path(os.environ.get("OPTIMODEL_IMAGES_DIR", str(_REPO_DEV / "images")))


def cni_bin_dir(bin_dir: Path) -> Path:
    """The CNI plugins that belong with the binaries of `bin_dir`."""
    return bin_dir.parent / "cni" / "bin"


def missing_binaries(bin_dir: Path) -> list[str]:
    """Names of the required binaries that `bin_dir` lacks."""
    missing = [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]
    return missing + missing_node_binaries(bin_dir, cni_bin_dir(bin_dir))


def missing_images(images_dir: Path) -> list[str]:
    """The images the node needs that `images_dir` has no archive of (the pause image, CoreDNS, the
    object store)."""
    names = [p.name for p in images_dir.glob("*.tar")] if images_dir.is_dir() else []
    needed = {"pause": "optimodel-pause", "coredns": "coredns", "versitygw": "versitygw"}
    return [what for what, stem in needed.items() if not any(stem in n for n in names)]


def free_port() -> int:
    """A TCP port free on all addresses right now."""
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


@dataclass
class ClusterState:
    """What `up` recorded: enough for `down` to stop exactly it and for clients to reach it."""

    link: str
    cidr: str
    ports: dict[str, int]
    processes: list[procs.ProcessRecord] = field(default_factory=list)

    @property
    def network(self) -> NetworkConfig:
        """The node's link to the host."""
        return NetworkConfig(self.link, self.cidr)

    def to_json(self) -> str:
        """Serialized form for cluster.json."""
        data: dict[str, Any] = {
            "link": self.link,
            "cidr": self.cidr,
            "ports": self.ports,
            "processes": [p.to_json() for p in self.processes],
        }
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ClusterState:
        """Parse cluster.json."""
        data = json.loads(text)
        return cls(
            link=data["link"],
            cidr=data["cidr"],
            ports=data["ports"],
            processes=[procs.ProcessRecord.from_json(p) for p in data["processes"]],
        )


class ControlPlane:
    """One local cluster living in one state directory."""

    def __init__(
        self,
        state_dir: Path,
        bin_dir: Path | None = None,
        tie_to_caller: bool = False,
        images_dir: Path | None = None,
        image_store: Path | None = None,
    ) -> None:
        """`tie_to_caller`: the processes get SIGTERM when the calling thread's process dies (test
        sessions killed by a timeout then leave fewer things behind). `image_store`: containerd's
        root (images, snapshots) when it should outlive the state directory."""
        self.state_dir = state_dir.resolve()
        self.tie_to_caller = tie_to_caller
        self.bin_dir = (bin_dir or default_bin_dir()).resolve()
        self.images_dir = (images_dir or default_images_dir()).resolve()
        self.image_store = image_store
        self.pki = Pki(self.state_dir / "pki")
        self.kubeconfig = self.state_dir / "kubeconfig"
        self.logs = self.state_dir / "logs"
        self.audit_log = self.logs / "audit.log"
        self._state_file = self.state_dir / "cluster.json"

    # ----- state -----------------------------------------------------------------------------
    def load_state(self) -> ClusterState | None:
        """The recorded state, or None when nothing was started here."""
        if not self._state_file.exists():
            return None
        return ClusterState.from_json(self._state_file.read_text())

    def _save(self, state: ClusterState) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(state.to_json())
        tmp.replace(self._state_file)

    def running(self) -> bool:
        """True when every recorded process is alive."""
        state = self.load_state()
        return bool(state and state.processes and all(procs.is_alive(p) for p in state.processes))

    @property
    def api_port(self) -> int:
        """The API server's secure port."""
        state = self.load_state()
        if state is None:
            raise ClusterError(f"no cluster recorded in {self.state_dir}")
        return state.ports["apiserver"]

    @property
    def host_ip(self) -> str:
        """The host's address on the node's link: the API server advertises it, pods reach test servers there."""
        state = self.load_state()
        if state is None:
            raise ClusterError(f"no cluster recorded in {self.state_dir}")
        return state.network.host_ip

    # ----- up ---------------------------------------------------------------------------------
    def up(self, net: NetworkConfig | None = None, timeout: float = 120.0) -> ClusterState:
        """Start the cluster and wait until a pod could run on it; reports an already running one.

        `net` None claims a node network of its own (test clusters); otherwise that one is used.
        """
        state = self.load_state()
        if state is not None and self.running():
            return state
        if state is not None:
            self.down()  # a half-dead cluster: stop what is left, then start afresh
        missing = missing_binaries(self.bin_dir)
        if missing:
            raise ClusterError(f"missing {', '.join(missing)} in {self.bin_dir}: run `make k8s-bins`")
        missing = missing_images(self.images_dir)
        if missing:
            raise ClusterError(f"no {' or '.join(missing)} image in {self.images_dir}: run `make images`")
        if os.geteuid() != 0:
            raise ClusterError("the local cluster needs root: the node gets network and mount namespaces")
        if net is None:
            net = network.claim_test_network()
        else:
            network.ensure(net)
        old_ports = state.ports if state else {}
        ports = {
            name: old_ports[name] if name in old_ports and _port_free(old_ports[name]) else free_port()
            for name in ("etcd", "etcdPeer", "apiserver", "controllerManager", "scheduler")
        }
        state = ClusterState(link=net.link, cidr=net.cidr, ports=ports)
        self._save(state)
        try:
            self._start(state, timeout)
        except BaseException:
            self.down()
            raise
        return state

    def node(self, state: ClusterState) -> Node:
        """The cluster's node as laid out in the state directory."""
        net = state.network
        return Node(
            NodeLayout(
                state_dir=self.state_dir / "node",
                bin_dir=self.bin_dir,
                cni_bin_dir=cni_bin_dir(self.bin_dir),
                node_name=NODE_NAME,
                node_ip=net.node_ip,
                pod_cidr=net.pod_cidr,
                cluster_cidr=net.pod_cidr,
                cgroup_root=f"/optimodel-{net.link}",
                pause_image=PAUSE_IMAGE,
                ca_cert=self.pki.ca.cert,
                kubelet_cert=self.pki.dir / "node.crt",
                kubelet_key=self.pki.dir / "node.key",
                containerd_root=self.image_store,
            ),
            net,
        )

    def _start(self, state: ClusterState, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self._make_credentials(state)
        node = self.node(state)
        node.prepare(self.state_dir / "kubeconfigs" / "kube-proxy.yaml")
        self._spawn(state, "containerd", node.containerd_argv(), env=node.env())
        self._spawn(state, "etcd", self._etcd_args(state))
        self._write_audit_policy()
        self._spawn(state, "kube-apiserver", self._apiserver_args(state))
        self._wait("containerd", deadline, state, node.containerd_ready)
        try:
            node.import_images(sorted(self.images_dir.glob("*.tar")))
        except NodeError as err:
            raise ClusterError(str(err)) from err
        self._wait("kube-apiserver /readyz", deadline, state, lambda: self._get("/readyz") == "ok")
        self._spawn(state, "kube-controller-manager", self._controller_manager_args(state))
        self._spawn(state, "kube-scheduler", self._scheduler_args(state))
        self._spawn(state, "kubelet", node.kubelet_argv(self.state_dir / "kubeconfigs" / "kubelet.yaml"), node.env())
        self._spawn(state, "kube-proxy", node.kube_proxy_argv(), node.env())
        self._wait(
            "the default ServiceAccount",
            deadline,
            state,
            lambda: self._exists("/api/v1/namespaces/default/serviceaccounts/default"),
        )
        self._wait(
            "the kube-root-ca.crt ConfigMap",
            deadline,
            state,
            lambda: self._exists("/api/v1/namespaces/default/configmaps/kube-root-ca.crt"),
        )
        self._wait(f"Node {NODE_NAME} Ready and schedulable", deadline, state, self._node_ready)
        self._apply(coredns_manifests() + objectstore.manifests(*self._object_store_root_keys(node)))
        self._wait("CoreDNS Ready", deadline, state, lambda: self._deployment_ready("kube-system", "coredns"))
        self._wait(
            "the object store Ready",
            deadline,
            state,
            lambda: self._deployment_ready(objectstore.NAMESPACE, objectstore.SERVICE),
        )
        self._wait(
            "kube-scheduler /healthz",
            deadline,
            state,
            lambda: self._component_healthy(state.ports["scheduler"]),
        )

    def _make_credentials(self, state: ClusterState) -> None:
        self.pki.ensure_ca()
        net = state.network
        self.pki.serving_cert("apiserver", ["127.0.0.1", net.host_ip, SERVICE_IP])
        state_kc = self.state_dir / "kubeconfigs"
        port = state.ports["apiserver"]
        admin = self.pki.client_cert("admin", "optimodel-admin", ("system:masters",))
        write_kubeconfig(self.kubeconfig, f"https://127.0.0.1:{port}", self.pki.ca.cert, "optimodel-admin", admin)
        # The node's parts live in the node's network namespace: its 127.0.0.1 is not the host's.
        for name, user, groups, server in (
            ("kube-controller-manager", "system:kube-controller-manager", (), "127.0.0.1"),
            ("kube-scheduler", "system:kube-scheduler", (), "127.0.0.1"),
            ("kubelet", f"system:node:{NODE_NAME}", ("system:nodes",), net.host_ip),
            ("kube-proxy", "system:kube-proxy", (), net.host_ip),
        ):
            write_kubeconfig(
                state_kc / f"{name}.yaml",
                f"https://{server}:{port}",
                self.pki.ca.cert,
                user,
                self.pki.client_cert(name, user, groups),
            )
        self.pki.client_cert("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",))
        self.pki.serving_cert("node", [net.node_ip], dns=(NODE_NAME,))

    def _object_store_root_keys(self, node: Node) -> tuple[str, str]:
        """The object store's root keys, made at the first start and kept (mode 0600) with the
        cluster's other credentials, and its data folder in the node, owned by the store's user."""
        keys = self.pki.dir / "object-store-root.json"
        if not keys.exists():
            keys.touch(mode=0o600)
            keys.write_text(json.dumps({"access": f"root{secrets.token_hex(8)}", "secret": secrets.token_urlsafe(30)}))
        data = node.layout.state_dir / objectstore.DATA_DIR.lstrip("/")
        for folder in (data, *(data / sub for sub in objectstore.DATA_SUBDIRS)):
            folder.mkdir(parents=True, exist_ok=True)
            os.chown(folder, objectstore.USER_ID, objectstore.USER_ID)
        stored = json.loads(keys.read_text())
        return stored["access"], stored["secret"]

    def _spawn(self, state: ClusterState, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        if self.tie_to_caller:
            # The kubelet and containerd stop their work on SIGTERM; the rest hold nothing worth a
            # graceful stop (a kube-apiserver whose etcd is gone hangs in its shutdown).
            signal = "TERM" if name in ("kubelet", "containerd") else "KILL"
            argv = ["setpriv", "--pdeathsig", signal, "--", *argv]
        state.processes.append(procs.spawn(name, argv, self.logs / f"{name}.log", env))
        self._save(state)

    def _bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    def _etcd_args(self, state: ClusterState) -> list[str]:
        client, peer = (
            f"http://127.0.0.1:{state.ports['etcd']}",
            f"http://127.0.0.1:{state.ports['etcdPeer']}",
        )
        return [
            self._bin("etcd"),
            "--name=default",
            f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]

    def _write_audit_policy(self) -> None:
        """The API server's audit policy: the requests of `AUDITED_USER` only, at `Metadata` level.

        A test that must count or inspect what a client asks of the API server (the operator's watch
        URLs, its requests per reconcile) runs that client as this user and reads `audit_log`; every
        other user (components, kubectl, other tests) is left out, so the log stays small.
        """
        self.logs.mkdir(parents=True, exist_ok=True)
        policy = {
            "apiVersion": "audit.k8s.io/v1",
            "kind": "Policy",
            "omitStages": ["RequestReceived"],
            "rules": [{"level": "Metadata", "users": [AUDITED_USER]}, {"level": "None"}],
        }
        (self.state_dir / "audit-policy.yaml").write_text(yaml.safe_dump(policy))

    def _apiserver_args(self, state: ClusterState) -> list[str]:
        p = self.pki.dir
        return [
            self._bin("kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{state.ports['etcd']}",
            "--bind-address=0.0.0.0",
            f"--secure-port={state.ports['apiserver']}",
            f"--advertise-address={state.network.host_ip}",
            f"--cert-dir={p}",
            f"--tls-cert-file={p / 'apiserver.crt'}",
            f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            "--allow-privileged=true",
            f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={p / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--profiling=false",
            f"--audit-policy-file={self.state_dir / 'audit-policy.yaml'}",
            f"--audit-log-path={self.audit_log}",
            "--v=1",
        ]

    def _component_args(self, name: str, port: int) -> list[str]:
        kc = self.state_dir / "kubeconfigs" / f"{name}.yaml"
        return [
            self._bin(name),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.state_dir / 'pki' / name}",
            "--leader-elect=false",
            "--v=1",
        ]

    def _controller_manager_args(self, state: ClusterState) -> list[str]:
        p = self.pki.dir
        return [
            *self._component_args("kube-controller-manager", state.ports["controllerManager"]),
            f"--controllers={','.join(CONTROLLERS)}",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={p / 'sa.key'}",
            f"--root-ca-file={p / 'ca.crt'}",
            f"--cluster-signing-cert-file={p / 'ca.crt'}",
            f"--cluster-signing-key-file={p / 'ca.key'}",
            "--concurrent-deployment-syncs=5",
            "--concurrent-replicaset-syncs=5",
        ]

    def _scheduler_args(self, state: ClusterState) -> list[str]:
        return self._component_args("kube-scheduler", state.ports["scheduler"])

    def _wait(self, what: str, deadline: float, state: ClusterState, check: Callable[[], bool]) -> None:
        while True:
            for record in state.processes:
                if not procs.is_alive(record):
                    raise ClusterError(
                        f"{record.name} exited while waiting for {what}; see {self.logs}/{record.name}.log"
                    )
            try:
                if check():
                    return
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out waiting for {what}; logs in {self.logs}")
            time.sleep(0.1)

    # ----- talking to the API server (stdlib only: used before any client exists) ------------
    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca.cert))
        ctx.load_cert_chain(str(self.pki.dir / "admin.crt"), str(self.pki.dir / "admin.key"))
        return ctx

    def _get(self, path: str) -> str:
        url = f"https://127.0.0.1:{self.api_port}{path}"
        with urllib.request.urlopen(url, context=self._ssl_context(), timeout=5) as resp:
            return str(resp.read().decode())

    def _exists(self, path: str) -> bool:
        try:
            self._get(path)
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return False
            raise
        return True

    def _node_ready(self) -> bool:
        """Ready, and without the not-ready taint the node-lifecycle controller removes after."""
        try:
            node = json.loads(self._get(f"/api/v1/nodes/{NODE_NAME}"))
        except urllib.error.HTTPError:
            return False
        conditions = node.get("status", {}).get("conditions", [])
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        return ready and not node.get("spec", {}).get("taints")

    def _deployment_ready(self, namespace: str, name: str) -> bool:
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
        if not self._exists(path):
            return False
        return int(json.loads(self._get(path)).get("status", {}).get("readyReplicas", 0)) >= 1

    def _apply(self, objects: list[dict[str, Any]]) -> None:
        """Server-side apply with the built kubectl (the add-ons are few and applied once per start)."""
        proc = subprocess.run(
            [self._bin("kubectl"), f"--kubeconfig={self.kubeconfig}", "apply", "--server-side", "-f", "-"],
            input=yaml.safe_dump_all(objects),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if proc.returncode != 0:
            raise ClusterError(f"applying the add-ons: {proc.stderr.strip()}")

    def _component_healthy(self, port: int) -> bool:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=ctx, timeout=5) as resp:
            return bool(resp.status == 200)

    def restart_api_server(self, timeout: float = 60.0) -> None:
        """Stop the API server (SIGTERM) and start it again with the same flags and port, as an upgrade
        of the control plane does; returns once it is ready. Every client's watches break meanwhile."""
        state = self.load_state()
        if state is None:
            raise ClusterError(f"no cluster recorded in {self.state_dir}")
        old = next(record for record in state.processes if record.name == "kube-apiserver")
        procs.stop(old, grace=20.0)
        state.processes.remove(old)
        self._spawn(state, "kube-apiserver", self._apiserver_args(state))
        self._wait("kube-apiserver /readyz", time.monotonic() + timeout, state, lambda: self._get("/readyz") == "ok")

    # ----- down / status --------------------------------------------------------------------
    def down(self) -> None:
        """Stop exactly the recorded processes (newest first), then whatever still runs in the node
        (containers, shims), and remove the node's cgroups, namespaces and link."""
        state = self.load_state()
        if state is None:
            return
        for record in reversed(state.processes):
            procs.stop(record, grace=15.0 if record.name in ("kubelet", "containerd") else 10.0)
        self.node(state).cleanup()
        state.processes = []
        self._save(state)

    def status(self) -> str:
        """A human summary: each recorded process and whether it runs."""
        state = self.load_state()
        if state is None or not state.processes:
            return f"no cluster running in {self.state_dir}"
        lines = [
            f"kubeconfig: {self.kubeconfig}",
            f"API server: https://{state.network.host_ip}:{state.ports['apiserver']}",
            f"node: {NODE_NAME} at {state.network.node_ip}, pods in {state.network.pod_cidr}",
        ]
        for record in state.processes:
            lines.append(f"{record.name:<24} pid {record.pid:<8} {'running' if procs.is_alive(record) else 'stopped'}")
        return "\n".join(lines)

    # ----- credentials for tests --------------------------------------------------------------
    def user_kubeconfig(self, user: str, groups: tuple[str, ...] | list[str] = ()) -> Path:
        """A kubeconfig authenticating as `user` in `groups` (a client certificate signed by the CA)."""
        slug = re.sub(r"[^A-Za-z0-9_.-]", "_", user)
        cert = self.pki.client_cert(f"user-{slug}", user, tuple(groups))
        return write_kubeconfig(
            self.state_dir / "kubeconfigs" / f"user-{slug}.yaml",
            f"https://127.0.0.1:{self.api_port}",
            self.pki.ca.cert,
            user,
            cert,
        )

    def service_account_token(self, namespace: str, name: str, expiration_seconds: int = 3600) -> str:
        """A token for the ServiceAccount, from the TokenRequest API."""
        body = json.dumps(
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": expiration_seconds},
            }
        ).encode()
        url = f"https://127.0.0.1:{self.api_port}/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"
        req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=self._ssl_context(), timeout=10) as resp:
            return str(json.loads(resp.read())["status"]["token"])
