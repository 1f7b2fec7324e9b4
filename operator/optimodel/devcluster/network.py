"""Host bridge and per-pod network namespaces, made with iproute2.

The launcher owns the bridge (its address is where pods reach the API server); the node agent
gives each pod a network namespace joined to the bridge by a veth pair, an address in the
bridge's subnet and a default route via the bridge. Everything is named after the bridge, so
`cleanup` finds exactly what one cluster made. No forwarding or NAT is enabled: pods reach the
bridge address and each other, the host reaches pods, and the host's own networking is untouched.
"""

from __future__ import annotations

import ipaddress
import subprocess
import threading
from dataclasses import dataclass

DEFAULT_BRIDGE = "omb0"
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
    """A bridge name and its host address with prefix, e.g. omb0 and 10.213.0.1/24."""

    bridge: str = DEFAULT_BRIDGE
    cidr: str = DEFAULT_CIDR

    @property
    def interface(self) -> ipaddress.IPv4Interface:
        """The host side address and subnet."""
        return ipaddress.IPv4Interface(self.cidr)

    @property
    def host_ip(self) -> str:
        """The bridge address: pods reach the API server and test servers here."""
        return str(self.interface.ip)

    def netns(self, ip: str) -> str:
        """Network namespace name of the pod with address `ip`."""
        return f"{self.bridge}-{ip.rsplit('.', 1)[1]}"

    def host_veth(self, ip: str) -> str:
        """Host-side veth name of the pod with address `ip` (at most 15 characters)."""
        return f"{self.bridge}v{ip.rsplit('.', 1)[1]}"


def bridge_exists(cfg: NetworkConfig) -> bool:
    """True when the bridge link exists."""
    return _ip("link", "show", cfg.bridge, check=False).returncode == 0


def create_bridge(cfg: NetworkConfig) -> None:
    """Create the bridge with its address; raises NetworkError when the name is taken."""
    _ip("link", "add", cfg.bridge, "type", "bridge")
    try:
        _ip("addr", "add", cfg.cidr, "dev", cfg.bridge)
        _ip("link", "set", cfg.bridge, "up")
    except NetworkError:
        _ip("link", "del", cfg.bridge, check=False)
        raise


def ensure_bridge(cfg: NetworkConfig) -> None:
    """Create the bridge unless it exists (idempotent `up`)."""
    if not bridge_exists(cfg):
        create_bridge(cfg)


def claim_test_bridge(prefix: str = "omt") -> NetworkConfig:
    """Create a bridge no other cluster on this machine uses (concurrent test sessions).

    Creating the link is the atomic claim: two sessions racing for one name see one fail.
    """
    used = _ip("-o", "-4", "addr", "show").stdout
    for n in _TEST_SUBNETS:
        cfg = NetworkConfig(bridge=f"{prefix}{n}", cidr=f"10.213.{n}.1/24")
        if bridge_exists(cfg) or f" 10.213.{n}." in used:
            continue
        try:
            create_bridge(cfg)
        except NetworkError:
            continue
        return cfg
    raise NetworkError("no free bridge name/subnet left for a test cluster")


def delete_bridge(cfg: NetworkConfig) -> None:
    """Remove the pods' links and namespaces of this bridge, then the bridge itself."""
    cleanup_pods(cfg)
    _ip("link", "del", cfg.bridge, check=False)


def create_pod_network(cfg: NetworkConfig, ip: str) -> str:
    """Make the pod's namespace, veth pair, address and default route; returns the netns name."""
    ns, veth = cfg.netns(ip), cfg.host_veth(ip)
    delete_pod_network(cfg, ip)
    _ip("netns", "add", ns)
    try:
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("link", "set", veth, "master", cfg.bridge, "up")
        prefix = cfg.interface.network.prefixlen
        batch = (
            f"link set lo up\naddr add {ip}/{prefix} dev eth0\nlink set eth0 up\nroute add default via {cfg.host_ip}\n"
        )
        proc = subprocess.run(["ip", "-n", ns, "-batch", "-"], input=batch, capture_output=True, text=True)
        if proc.returncode != 0:
            raise NetworkError(f"configuring {ns}: {proc.stderr.strip()}")
    except NetworkError:
        delete_pod_network(cfg, ip)
        raise
    return ns


def delete_pod_network(cfg: NetworkConfig, ip: str) -> None:
    """Remove the pod's namespace and veth; no-op when already gone.

    The host's neighbour (ARP) entry goes too: the next pod given this address has another MAC,
    and a stale entry would black-hole traffic to it for up to a minute.
    """
    _ip("netns", "del", cfg.netns(ip), check=False)
    _ip("link", "del", cfg.host_veth(ip), check=False)
    _ip("neigh", "flush", "to", ip, "dev", cfg.bridge, check=False)


def cleanup_pods(cfg: NetworkConfig) -> None:
    """Remove every pod namespace and veth named after this bridge (orphans included)."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(f"{cfg.bridge}-"):
            _ip("netns", "del", name, check=False)
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(f"{cfg.bridge}v"):
            _ip("link", "del", name, check=False)


class IpPool:
    """Hands out pod addresses from the bridge subnet (the bridge address excluded)."""

    def __init__(self, cfg: NetworkConfig) -> None:
        self._free = [str(h) for h in cfg.interface.network.hosts() if str(h) != cfg.host_ip]
        self._used: set[str] = set()
        self._lock = threading.Lock()

    def allocate(self) -> str:
        """The lowest free address; raises when the subnet is full."""
        with self._lock:
            for ip in self._free:
                if ip not in self._used:
                    self._used.add(ip)
                    return ip
        raise NetworkError("pod subnet exhausted")

    def release(self, ip: str) -> None:
        """Return an address to the pool."""
        with self._lock:
            self._used.discard(ip)
