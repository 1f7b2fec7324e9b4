"""The node's network namespace and its link to the host, made with iproute2.

The node (containerd, the kubelet, kube-proxy and every pod) lives in a network namespace of its
own, as a kind node lives in a container: kube-proxy's and the kubelet's iptables rules, the pods'
bridge and the forwarding switch are the node's, never the host's, and several clusters can run
side by side. A veth pair joins the node to the host: the host side carries the address the API
server advertises (pods and tests reach servers bound there), the node side the node's address;
a host route sends the pods' subnet to the node. Deleting the namespace removes all of it.
"""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LINK = "omb0"
DEFAULT_CIDR = "10.213.0.1/24"
_TEST_SUBNETS = range(1, 250)


class NetworkError(RuntimeError):
    """An iproute2 command failed."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


@dataclass(frozen=True)
class NetworkConfig:
    """The host side of the node's link and its address/prefix, e.g. omb0 and 10.213.0.1/24.

    The node takes the next address of that subnet; the pods take 10.214.<third octet>.0/24.
    """

    link: str = DEFAULT_LINK
    cidr: str = DEFAULT_CIDR

    @property
    def interface(self) -> ipaddress.IPv4Interface:
        """The host side address and subnet."""
        return ipaddress.IPv4Interface(self.cidr)

    @property
    def host_ip(self) -> str:
        """The host's address on the link: the API server advertises it, pods reach test servers there."""
        return str(self.interface.ip)

    @property
    def node_ip(self) -> str:
        """The node's address (its InternalIP): the kubelet and NodePorts listen there."""
        return str(self.interface.ip + 1)

    @property
    def pod_cidr(self) -> str:
        """The pods' subnet behind the node's bridge."""
        third = str(self.interface.ip).split(".")[2]
        return f"10.214.{third}.0/24"

    @property
    def netns(self) -> str:
        """The node's network namespace (under /run/netns)."""
        return f"{self.link}-node"

    @property
    def netns_path(self) -> Path:
        """The file that holds the namespace, for nsenter."""
        return Path("/run/netns") / self.netns


def exists(cfg: NetworkConfig) -> bool:
    """True when the node's namespace exists."""
    return cfg.netns_path.exists()


def create(cfg: NetworkConfig) -> None:
    """Make the node's namespace, the link, the addresses and routes; raises NetworkError when the
    namespace name is taken (the atomic claim of two clusters racing for one name)."""
    _ip("netns", "add", cfg.netns)
    try:
        _ip("link", "add", cfg.link, "type", "veth", "peer", "name", "eth0", "netns", cfg.netns)
        _ip("addr", "add", cfg.cidr, "dev", cfg.link)
        _ip("link", "set", cfg.link, "up")
        prefix = cfg.interface.network.prefixlen
        batch = (
            "link set lo up\n"
            f"addr add {cfg.node_ip}/{prefix} dev eth0\n"
            "link set eth0 up\n"
            f"route add default via {cfg.host_ip}\n"
        )
        proc = subprocess.run(["ip", "-n", cfg.netns, "-batch", "-"], input=batch, capture_output=True, text=True)
        if proc.returncode != 0:
            raise NetworkError(f"configuring {cfg.netns}: {proc.stderr.strip()}")
        _ip("route", "add", cfg.pod_cidr, "via", cfg.node_ip, "dev", cfg.link)
        # The node routes between its pods' bridge and the link: forwarding is per namespace.
        subprocess.run(
            ["ip", "netns", "exec", cfg.netns, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
            check=True,
            capture_output=True,
        )
    except (NetworkError, subprocess.CalledProcessError) as err:
        delete(cfg)
        raise NetworkError(f"setting up {cfg.netns}: {err}") from err


def ensure(cfg: NetworkConfig) -> bool:
    """Create the node's network unless it exists; True when this call created it."""
    if exists(cfg):
        return False
    create(cfg)
    return True


def claim_test_network(prefix: str = "omt") -> NetworkConfig:
    """Create a node network no other cluster on this machine uses (concurrent test sessions)."""
    used = _ip("-o", "-4", "addr", "show").stdout
    for n in _TEST_SUBNETS:
        cfg = NetworkConfig(link=f"{prefix}{n}", cidr=f"10.213.{n}.1/24")
        if exists(cfg) or f" 10.213.{n}." in used:
            continue
        try:
            create(cfg)
        except NetworkError:
            continue
        return cfg
    raise NetworkError("no free link name/subnet left for a test cluster")


def delete(cfg: NetworkConfig) -> None:
    """Remove the node's namespace (its bridge, pod links and rules go with it) and the host link."""
    _ip("netns", "del", cfg.netns, check=False)
    _ip("link", "del", cfg.link, check=False)
