"""What a tenant's spec may ask of a shared operator: endpoints, identity, images. Pure layer.

The operator acts on specs written by everyone allowed to create an OptimizedModel, with rights
of its own (docs/security.md). These checks run before the operator makes any request on a spec's
behalf, and a refusal is a `Problem` with its own reason, so the resource goes `Stalled` with a
message that names the setting to change. Stdlib only: no network, not even DNS.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from optimodel.reconcile import reasons as r
from optimodel.reconcile.observed import Problem
from optimodel.spec import OptimizedModelSpec

# AWS's public S3 endpoints (a `*` stands for exactly one DNS label, e.g. the region).
DEFAULT_S3_ENDPOINTS: tuple[str, ...] = (
    "https://s3.amazonaws.com",
    "https://s3.*.amazonaws.com",
    "https://s3.dualstack.*.amazonaws.com",
    "https://s3-fips.*.amazonaws.com",
)
# Cloud metadata services: whoever reaches them from the operator's pod gets the node's identity.
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
        "metadata.tencentyun.com",
        "metadata.platformequinix.com",
    }
)
METADATA_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32", "192.0.0.192/32")
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Policy:
    """Operator-wide limits on specs (from `OPTIMODEL_*` at startup; docs/security.md)."""

    allowed_s3_endpoints: tuple[str, ...] = DEFAULT_S3_ENDPOINTS
    allowed_job_images: tuple[str, ...] = ()  # empty: only the operator's configured Job image
    allowed_serve_images: tuple[str, ...] = ()  # empty: only the operator's configured serving image
    allowed_service_accounts: tuple[str, ...] = ()  # empty: no custom ServiceAccount for Jobs
    lend_operator_identity: bool = False  # resources without credentialsSecret use the operator's own


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int | None  # None only in an allow-list entry: `host:*`, any port


def parse_endpoint(url: str, pattern: bool = False) -> Endpoint:
    """scheme://host[:port][/] only; ValueError for anything else (user info, paths, queries).

    An allow-list entry (`pattern`) may end its host with `:*` for any port.
    """
    text = url.strip()
    any_port = pattern and text.rstrip("/").endswith(":*")
    parts = urlsplit(text.rstrip("/")[:-2] if any_port else text)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL with a host")
    if parts.username or parts.password or parts.query or parts.fragment or parts.path not in ("", "/"):
        raise ValueError(f"{url!r}: an endpoint is scheme://host[:port], without user, path or query")
    try:
        port = parts.port if parts.port is not None else _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise ValueError(f"{url!r} has an invalid port") from None
    return Endpoint(parts.scheme, parts.hostname.lower().rstrip("."), None if any_port else port)


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP a host literal stands for, legacy IPv4 spellings included (`2852039166`, `0xa9.0xfe...`),
    which the resolver accepts and a plain parser would miss."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except (OSError, ValueError):
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_metadata_host(host: str) -> bool:
    """A link-local or cloud metadata address or name: refused whatever the allow-list says."""
    host = host.lower().rstrip(".")
    if host in METADATA_HOSTS:
        return True
    address = _address(host)
    return address is not None and (address.is_link_local or any(address in net for net in METADATA_NETWORKS))


def _host_matches(pattern: str, host: str) -> bool:
    want, got = pattern.split("."), host.split(".")
    return len(want) == len(got) and all(w == "*" or w == g for w, g in zip(want, got, strict=True))


def endpoint_allowed(url: str, allowed: tuple[str, ...]) -> bool:
    endpoint = parse_endpoint(url)
    for entry in allowed:
        try:
            pattern = parse_endpoint(entry, pattern=True)
        except ValueError:
            continue  # settings validate entries at startup; a bad one allows nothing
        port_ok = pattern.port is None or pattern.port == endpoint.port
        if pattern.scheme == endpoint.scheme and port_ok and _host_matches(pattern.host, endpoint.host):
            return True
    return False


def effective_endpoint(spec: OptimizedModelSpec) -> str:
    """The URL boto3 will call: the spec's endpoint, or AWS's regional endpoint."""
    s3 = spec.artifacts.s3
    return s3.endpoint or f"https://s3.{s3.region}.amazonaws.com"


def spec_uris(spec: OptimizedModelSpec) -> dict[str, str]:
    """Every object URI of the spec, by the field that names it."""
    uris = {"spec.source.uri": spec.source.uri, "spec.evaluation.data": spec.evaluation.data,
            "spec.artifacts.uri": spec.artifacts.uri}
    if spec.optimization.quantization.calibration_data:
        uris["spec.optimization.quantization.calibrationData"] = spec.optimization.quantization.calibration_data
    if spec.optimization.pruning is not None:
        uris["spec.optimization.pruning.trainingData"] = spec.optimization.pruning.training_data
    return uris


def check_endpoints(spec: OptimizedModelSpec, policy: Policy) -> Problem | None:
    """file:// and S3 endpoints: the operator and its pods would reach them on the tenant's behalf."""
    for field, uri in spec_uris(spec).items():
        if not uri.startswith("s3://"):
            return Problem(
                r.LOCAL_FILE_NOT_ALLOWED,
                f"{field}: {uri.split(':', 1)[0]}:// URIs are for `optimodel run` only; in the cluster every "
                "object must be in S3 (s3://bucket/key)",
                retry=False,
            )
    url = effective_endpoint(spec)
    try:
        endpoint = parse_endpoint(url)
    except ValueError as error:
        return Problem(r.ENDPOINT_NOT_ALLOWED, f"spec.artifacts.s3.endpoint: {error}", retry=False)
    if is_metadata_host(endpoint.host):
        return Problem(
            r.ENDPOINT_NOT_ALLOWED,
            f"spec.artifacts.s3.endpoint {url} is a link-local or cloud metadata address: always refused",
            retry=False,
        )
    if not endpoint_allowed(url, policy.allowed_s3_endpoints):
        return Problem(
            r.ENDPOINT_NOT_ALLOWED,
            f"spec.artifacts.s3.endpoint {url} is not an allowed S3 endpoint; the operator's administrator "
            "lists them in OPTIMODEL_ALLOWED_S3_ENDPOINTS (chart value s3.allowedEndpoints)",
            retry=False,
        )
    return None


def check_identity(spec: OptimizedModelSpec, policy: Policy, job_image: str, serve_image: str) -> Problem | None:
    """Whose credentials, which images and which ServiceAccount the resource's pods would get."""
    if spec.artifacts.s3.credentials_secret is None and not policy.lend_operator_identity:
        return Problem(
            r.CREDENTIALS_REQUIRED,
            "spec.artifacts.s3.credentialsSecret is required: this operator does not lend its own cloud "
            "identity to resources (OPTIMODEL_LEND_OPERATOR_IDENTITY, chart value s3.lendOperatorIdentity)",
            retry=False,
        )
    images = (
        ("spec.job.image", spec.job.image, policy.allowed_job_images or (job_image,),
         "OPTIMODEL_ALLOWED_JOB_IMAGES (chart value job.allowedImages)"),
        ("spec.serving.image", spec.serving.image, policy.allowed_serve_images or (serve_image,),
         "OPTIMODEL_ALLOWED_SERVE_IMAGES (chart value serving.allowedImages)"),
    )
    for field, image, allowed, setting in images:
        if image is not None and image not in allowed:
            return Problem(
                r.IMAGE_NOT_ALLOWED, f"{field} {image} is not an allowed image; allowed: {', '.join(allowed)} "
                f"({setting})", retry=False)
    account = spec.job.service_account_name
    if account is not None and account not in policy.allowed_service_accounts:
        return Problem(
            r.SERVICE_ACCOUNT_NOT_ALLOWED,
            f"spec.job.serviceAccountName {account} is not allowed: Job pods run without a token unless the "
            "operator lists the ServiceAccount in OPTIMODEL_ALLOWED_SERVICE_ACCOUNTS (chart value "
            "job.allowedServiceAccounts)",
            retry=False,
        )
    return None


def check_spec(spec: OptimizedModelSpec, policy: Policy, job_image: str, serve_image: str) -> Problem | None:
    """The first thing this operator refuses to do for `spec`, or None."""
    return check_endpoints(spec, policy) or check_identity(spec, policy, job_image, serve_image)
