"""The cloud APIs behind the `cloud` backend, through Apache Libcloud: one small adapter per
provider kind (EC2, OpenStack) with the same few operations, returning `Vm`s
(sitedirectors/cloud_parse.py) and raising `CloudApiError` with the failure classified.

libcloud is imported here only, and only when a cloud queue is configured (the registry
loads sitedirectors.cloud lazily): sites without libcloud run their other backends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import urlencode, urlsplit
from xml.etree import ElementTree

from libcloud.common.exceptions import BaseHTTPError
from libcloud.common.types import InvalidCredsError, LibcloudError
from libcloud.compute import base as libcloud_base
from libcloud.compute.drivers import ec2 as libcloud_ec2
from libcloud.compute.drivers import openstack as libcloud_openstack
from libcloud.compute.types import NodeState
from libcloud.utils import xml as libcloud_xml

from sitedirectors.cloud_options import CloudOptions, Credentials
from sitedirectors.cloud_parse import (
    TAG_DIRECTOR,
    TAG_QUEUE,
    ApiErrorKind,
    ProviderLimits,
    Vm,
    classify_api_error,
    normalise_state,
    owned_by,
)

T = TypeVar("T")

# libcloud ships py.typed, but most of its API is unannotated: called through Any here.
_Node: Any = libcloud_base.Node
_NodeImage: Any = libcloud_base.NodeImage
_NodeSize: Any = libcloud_base.NodeSize
_findtext: Any = libcloud_xml.findtext
_findall: Any = libcloud_xml.findall
_ec2: Any = libcloud_ec2
_openstack: Any = libcloud_openstack

DEFAULT_EC2_REGION = "us-east-1"
# The largest user data each provider takes (EC2: 16 KiB before base64; Nova: 64 KiB).
USER_DATA_LIMITS = {"ec2": 16 * 1024, "openstack": 64 * 1024 - 1}


class CloudApiError(Exception):
    """A cloud API call failed; `kind` says whether to fail, retry, or retry after backing off."""

    def __init__(self, kind: ApiErrorKind, operation: str, endpoint: str, message: str) -> None:
        super().__init__(f"{operation} at {endpoint}: {message}")
        self.kind = kind
        self.operation = operation
        self.endpoint = endpoint
        self.detail = message


# How Nova (and emulators) say they have no os-getConsoleOutput.
_NO_CONSOLE = ("no such action", "not supported", "not implemented", "unsupported")


class ConsoleNotSupportedError(Exception):
    """The provider (or libcloud's driver for it) offers no console output."""


# ---- libcloud workarounds ----------------------------------------------------------------------
# Needed against moto 5.2.x (measured with moto 5.2.1 and 5.2.5, apache-libcloud 3.9.1); both are
# no-ops against AWS itself, so they stay on for every endpoint:
# 1. moto writes the EC2 XML namespace without its trailing slash
#    ("http://ec2.amazonaws.com/doc/2016-11-15"), so libcloud's namespaced XPath finds nothing
#    and every list comes back empty: the response body is normalised before parsing.
# 2. moto's error elements carry a third child (<Type>Sender</Type>), which breaks libcloud's
#    `code, message = list(err)` with a ValueError: errors are read by tag instead.
# Also against moto (no workaround needed, just how it is called): signature v4 with host, port
# and secure=False from the endpoint URL, and images as NodeImage(id=...) (libcloud's
# list_images(ex_image_ids=...) returns nothing there).
_EC2_NAMESPACE = libcloud_ec2.NAMESPACE
_MOTO_NAMESPACE = _EC2_NAMESPACE.rstrip("/")
_EC2_AUTH_CODES = frozenset(
    {"AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch", "OptInRequired"}
)


class _EC2Response(libcloud_ec2.EC2Response):
    def parse_body(self) -> Any:
        if isinstance(self.body, str) and f'xmlns="{_MOTO_NAMESPACE}"' in self.body:
            self.body = self.body.replace(f'xmlns="{_MOTO_NAMESPACE}"', f'xmlns="{_EC2_NAMESPACE}"')
        return cast(Any, super()).parse_body()

    def parse_error(self) -> str:
        try:
            body = ElementTree.XML(self.body or "")
        except ElementTree.ParseError:
            return f"HTTP {self.status}: {str(self.body)[:200]}"
        errors = []
        for err in body.findall("Errors/Error"):
            code, message = err.findtext("Code") or "", err.findtext("Message") or ""
            errors.append(f"{code}: {message}")
            if code in _EC2_AUTH_CODES:
                raise InvalidCredsError(errors[-1])
        return "\n".join(errors) or f"HTTP {self.status}"


class _EC2Connection(libcloud_ec2.EC2Connection):
    responseCls = _EC2Response

    def request(self, action: str, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        # libcloud sends EC2 queries as GET with every parameter in the URL -- user data of up
        # to 16 KiB (22 KiB in base64) included, where proxies log it and URL limits bite.
        # The AWS SDKs POST them as a form; so do we (moto's IAM check only verifies
        # signatures of such requests).
        method = kwargs.get("method", "GET")
        if method != "GET" or args or kwargs.get("data") is not None or not params:
            return cast(Any, super()).request(action, params, *args, **kwargs)
        form = urlencode({**params, "Version": self.version})
        headers = {**(kwargs.pop("headers", None) or {})}
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        kwargs.update(method="POST", data=form, headers=headers)
        return cast(Any, super()).request(action, {}, **kwargs)

    def pre_connect_hook(self, params: Any, headers: Any) -> Any:
        # libcloud signs User-Agent; AWS's SDKs never do (botocore excludes it), and moto
        # recomputes signatures the botocore way: leave it out of the request altogether.
        for name in [key for key in headers if key.lower() == "user-agent"]:
            del headers[name]
        return cast(Any, super()).pre_connect_hook(params, headers)


class _EC2Driver(libcloud_ec2.EC2NodeDriver):
    connectionCls = _EC2Connection

    def _to_node(self, element: Any) -> Any:
        # libcloud keeps `reason` (free text) but not stateReason's code, which tells a VM
        # that powered itself off from one the provider stopped (Server.*).
        node = cast(Any, super())._to_node(element)
        code = _findtext(element=element, xpath="stateReason/code", namespace=_EC2_NAMESPACE)
        node.extra["state_reason_code"] = code or ""
        return node


# ---- the adapters ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewVm:
    name: str
    tags: Mapping[str, str]
    user_data: str


def _http_status(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None) or getattr(exc, "http_code", None)
    return code if isinstance(code, int) else None


class CloudProvider:
    """The operations the backend needs, for one provider, region and tenant."""

    kind = ""

    def __init__(self, options: CloudOptions, driver: Any, endpoint: str) -> None:
        self.options = options
        self.driver = driver
        # Where the API is, for messages ("ec2 at https://ec2.eu-west-1.amazonaws.com").
        self.endpoint = endpoint
        self._cores: int | None = None

    @property
    def user_data_limit(self) -> int:
        return USER_DATA_LIMITS[self.kind]

    def call(self, operation: str, fn: Callable[[], T]) -> T:
        """Run one libcloud call, its failures as CloudApiError."""
        try:
            return fn()
        except InvalidCredsError as exc:
            raise CloudApiError(
                ApiErrorKind.AUTH, operation, self.endpoint, f"credentials refused: {exc}"
            ) from exc
        except OSError as exc:
            # requests' errors (refused, timed out, TLS) are OSErrors.
            raise CloudApiError(
                ApiErrorKind.TRANSIENT, operation, self.endpoint, f"{type(exc).__name__}: {exc}"
            ) from exc
        except (BaseHTTPError, LibcloudError) as exc:
            status = _http_status(exc)
            kind = classify_api_error(status if status is not None else 400, str(exc))
            raise CloudApiError(kind, operation, self.endpoint, str(exc)) from exc

    def list_vms(self, director: str, queue: str) -> list[Vm]:
        raise NotImplementedError

    def create_vm(self, new: NewVm) -> Vm:
        o = self.options
        image = _NodeImage(id=o.image, name=None, driver=self.driver)
        size = _NodeSize(o.flavor, o.flavor, 0, 0, 0, 0, self.driver)
        extra = self._create_options()
        if o.key_name:
            extra["ex_keyname"] = o.key_name
        node = self.call(
            "create",
            lambda: self.driver.create_node(
                name=new.name,
                image=image,
                size=size,
                ex_userdata=new.user_data,
                ex_metadata=dict(new.tags),
                **extra,
            ),
        )
        return self._to_vm(node)

    def _create_options(self) -> dict[str, Any]:
        """The driver's own create_node arguments (network, security groups...)."""
        raise NotImplementedError

    def _to_vm(self, node: Any) -> Vm:
        raise NotImplementedError

    def destroy_vm(self, node_id: str) -> None:
        node = _Node(node_id, None, NodeState.UNKNOWN, [], [], self.driver)
        try:
            self.call("destroy", lambda: self.driver.destroy_node(node))
        except CloudApiError as exc:
            if not _is_not_found(exc):
                raise

    def console_output(self, node_id: str) -> str:
        raise ConsoleNotSupportedError(self.kind)

    def limits(self) -> ProviderLimits:
        return ProviderLimits()

    def cores_per_vm(self) -> int | None:
        return None

    def _vm(self, node: Any, native: str, reason: str) -> Vm:
        tags = node.extra.get("tags") or node.extra.get("metadata") or {}
        return Vm(
            node_id=str(node.id),
            name=str(node.name or ""),
            state=normalise_state(str(node.state), native),
            native=native,
            tags={str(k): str(v) for k, v in tags.items()},
            state_reason=reason,
        )


def _is_not_found(exc: CloudApiError) -> bool:
    text = exc.detail.lower()
    return "notfound" in text or "not found" in text or "404" in text


class Ec2Provider(CloudProvider):
    kind = "ec2"

    def list_vms(self, director: str, queue: str) -> list[Vm]:
        filters = {f"tag:{TAG_DIRECTOR}": director, f"tag:{TAG_QUEUE}": queue}
        nodes = self.call("list", lambda: self.driver.list_nodes(ex_filters=filters))
        vms = [self._to_vm(node) for node in nodes]
        return [vm for vm in vms if owned_by(vm.tags, director, queue)]

    def _to_vm(self, node: Any) -> Vm:
        native = str(node.extra.get("status") or node.state)
        return self._vm(node, native, str(node.extra.get("state_reason_code") or ""))

    def _create_options(self) -> dict[str, Any]:
        o = self.options
        # The pilot's poweroff ends the VM for good: nothing lingers (or costs).
        extra: dict[str, Any] = {"ex_terminate_on_shutdown": True}
        if o.network:
            extra["ex_subnet"] = _ec2.EC2NetworkSubnet(o.network, o.network, "available")
        if o.security_groups:
            ids = all(group.startswith("sg-") for group in o.security_groups)
            extra["ex_security_group_ids" if ids else "ex_security_groups"] = o.security_groups
        return extra

    def console_output(self, node_id: str) -> str:
        node = _Node(node_id, None, NodeState.UNKNOWN, [], [], self.driver)
        answer = self.call("console", lambda: self.driver.ex_get_console_output(node))
        return str(answer.get("output") or "")

    def limits(self) -> ProviderLimits:
        """The account's instance limit (DescribeAccountAttributes max-instances) and its
        instances in the region. EC2's vCPU quota lives in the Service Quotas API: not here."""

        def fetch() -> tuple[int | None, int]:
            params = {"Action": "DescribeAccountAttributes", "AttributeName.1": "max-instances"}
            body = self.driver.connection.request(self.driver.path, params=params).object
            value = ""
            for item in _findall(body, "accountAttributeSet/item", _EC2_NAMESPACE):
                if _findtext(item, "attributeName", _EC2_NAMESPACE) == "max-instances":
                    value = _findtext(item, "attributeValueSet/item/attributeValue", _EC2_NAMESPACE)
            nodes = self.driver.list_nodes()
            used = sum(1 for n in nodes if n.state not in (NodeState.TERMINATED,))
            return (int(value) if value and value.isdigit() else None), used

        maximum, used = self.call("limits", fetch)
        return ProviderLimits(max_instances=maximum, used_instances=used)

    def cores_per_vm(self) -> int | None:
        # libcloud's EC2 sizes come from its own tables: no API call.
        if self._cores is None:
            sizes = {s.id: s for s in self.driver.list_sizes()}
            size = sizes.get(self.options.flavor)
            vcpu = str(size.extra.get("vcpu", "")) if size is not None else ""
            self._cores = int(vcpu) if vcpu.isdigit() else 0
        return self._cores or None


class OpenStackProvider(CloudProvider):
    kind = "openstack"

    def list_vms(self, director: str, queue: str) -> list[Vm]:
        # Nova cannot filter servers by metadata: the tenant's list, filtered here.
        nodes = self.call("list", self.driver.list_nodes)
        vms = [self._to_vm(node) for node in nodes]
        return [vm for vm in vms if owned_by(vm.tags, director, queue)]

    def _to_vm(self, node: Any) -> Vm:
        fault = node.extra.get("fault") or {}
        reason = str(fault.get("message", "")) if isinstance(fault, Mapping) else str(fault)
        native = str(node.extra.get("vm_state") or node.state)
        return self._vm(node, native, reason)

    def _create_options(self) -> dict[str, Any]:
        o = self.options
        extra: dict[str, Any] = {}
        if o.network:
            extra["networks"] = [_openstack.OpenStackNetwork(o.network, None, None, self.driver)]
        if o.security_groups:
            extra["ex_security_groups"] = [
                _openstack.OpenStackSecurityGroup(None, None, name, "", self.driver)
                for name in o.security_groups
            ]
        return extra

    def console_output(self, node_id: str) -> str:
        node = _Node(node_id, None, NodeState.UNKNOWN, [], [], self.driver)
        try:
            answer = self.call("console", lambda: self.driver.ex_get_console_output(node))
        except CloudApiError as exc:
            # Nova without os-getConsoleOutput (or a cloud that turned it off).
            text = exc.detail.lower()
            if exc.kind is ApiErrorKind.REFUSED and any(w in text for w in _NO_CONSOLE):
                raise ConsoleNotSupportedError(self.kind) from exc
            raise
        return str(answer.get("output") or "") if isinstance(answer, Mapping) else str(answer)

    def limits(self) -> ProviderLimits:
        def fetch() -> Mapping[str, Any]:
            body = self.driver.connection.request("/limits").object
            absolute = (body or {}).get("limits", {}).get("absolute", {})
            return cast(Mapping[str, Any], absolute)

        absolute = self.call("limits", fetch)

        def number(name: str) -> int | None:
            value = absolute.get(name)
            return value if isinstance(value, int) else None

        return ProviderLimits(
            max_instances=number("maxTotalInstances"),
            used_instances=number("totalInstancesUsed"),
            max_cores=number("maxTotalCores"),
            used_cores=number("totalCoresUsed"),
        )

    def cores_per_vm(self) -> int | None:
        if self._cores is None:
            sizes: Sequence[Any] = self.call("flavors", self.driver.list_sizes)
            match = [s for s in sizes if self.options.flavor in (str(s.id), str(s.name))]
            self._cores = int(match[0].vcpus or 0) if match else 0
        return self._cores or None


# ---- construction ------------------------------------------------------------------------------


def open_provider(options: CloudOptions, credentials: Credentials) -> CloudProvider:
    """The adapter for the options' provider (no API call is made yet)."""
    if options.provider == "ec2":
        region = options.region or DEFAULT_EC2_REGION
        kwargs: dict[str, Any] = {"region": region, "timeout": options.timeout}
        endpoint = f"https://ec2.{region}.amazonaws.com"
        if options.endpoint:
            url = urlsplit(options.endpoint)
            secure = url.scheme == "https"
            kwargs.update(
                host=url.hostname,
                port=url.port or (443 if secure else 80),
                secure=secure,
                signature_version="4",
            )
            endpoint = options.endpoint
        ec2_driver: Any = _EC2Driver
        driver = ec2_driver(credentials.key_id, credentials.secret, **kwargs)
        return Ec2Provider(options, driver, endpoint)
    kwargs = {
        "ex_tenant_name": credentials.tenant,
        "ex_force_auth_url": options.endpoint,
        "ex_force_auth_version": options.auth_version,
        "ex_force_service_type": "compute",
        "timeout": options.timeout,
    }
    if options.auth_version.startswith("3"):
        kwargs["ex_domain_name"] = credentials.domain
    if options.service_name:
        kwargs["ex_force_service_name"] = options.service_name
    if options.region:
        kwargs["ex_force_service_region"] = options.region
    openstack_driver = _openstack.OpenStack_1_1_NodeDriver(
        credentials.username, credentials.password, **kwargs
    )
    return OpenStackProvider(options, openstack_driver, options.endpoint)
