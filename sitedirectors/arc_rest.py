"""A-REX's REST interface 1.0 (`<endpoint>/rest/1.0`) as one queue's credentials see it:
a client certificate or a bearer token, the CE's CAs, and errors that say whether trying
again later may help."""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import httpx

from sitedirectors.arc_options import ArcOptions
from sitedirectors.arc_parse import job_ids_body

REST_PATH = "/rest/1.0"


class ArcRequestError(Exception):
    """A request to the CE failed; `transient` when trying again later may work (connection
    refused or dropped, timeout, 5xx), not when the CE refused it (4xx, TLS verification)."""

    def __init__(self, message: str, *, transient: bool, status: int = 0) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status


def _tls_problem(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class ArcRest:
    """A-REX's REST interface with this queue's credentials. The HTTP client is rebuilt when
    a credential file changes (a renewed certificate, a new token); the token is read from
    its file and goes only into the Authorization header, never into a message."""

    def __init__(
        self, options: ArcOptions, *, on_request: Callable[[httpx.Request], None] | None = None
    ) -> None:
        self.options = options
        self.endpoint = options.endpoint
        self.base = options.endpoint + REST_PATH
        self._on_request = on_request
        self._client: httpx.Client | None = None
        self._signature: tuple[tuple[str, int, int], ...] = ()
        self._token = ""

    def _files(self) -> list[str]:
        o = self.options
        return [p for p in (o.cert_file, o.key_file, o.token_file, o.ca_file) if p]

    def _current_signature(self) -> tuple[tuple[str, int, int], ...]:
        signature = []
        for path in self._files():
            try:
                st = os.stat(path)
            except OSError as exc:
                raise ArcRequestError(
                    f"ARC CE {self.endpoint}: cannot read {path}: {exc.strerror}", transient=False
                ) from exc
            signature.append((path, st.st_mtime_ns, st.st_size))
        return tuple(signature)

    def _build(self) -> httpx.Client:
        o = self.options
        try:
            context = ssl.create_default_context(cafile=o.ca_file or None, capath=o.ca_dir or None)
            if o.cert_file:
                context.load_cert_chain(o.cert_file, o.key_file)
            token = Path(o.token_file).read_text().strip() if o.token_file else ""
        except (OSError, ssl.SSLError) as exc:
            raise ArcRequestError(
                f"ARC CE {self.endpoint}: cannot load the queue's credentials or CAs: {exc}",
                transient=False,
            ) from exc
        if o.token_file and not token:
            raise ArcRequestError(
                f"ARC CE {self.endpoint}: token_file {o.token_file} is empty", transient=False
            )
        self._token = token
        hooks = {"request": [self._on_request]} if self._on_request else {}
        # trust_env=False: no proxies or .netrc from the environment.
        return httpx.Client(
            verify=context,
            timeout=httpx.Timeout(o.timeout),
            trust_env=False,
            event_hooks=hooks,
            headers={"Accept": "application/json", "User-Agent": "gridpilot-sitedirector"},
        )

    def client(self) -> httpx.Client:
        signature = self._current_signature()
        if self._client is None or signature != self._signature:
            if self._client is not None:
                self._client.close()
            self._client = self._build()
            self._signature = signature
        return self._client

    def request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: Mapping[str, str] | None = None,
        content: bytes | Iterator[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """The CE's answer (2xx), or ArcRequestError naming the endpoint and what failed."""
        client = self.client()
        sent = dict(headers or {})
        if self._token:
            sent["Authorization"] = f"Bearer {self._token}"
        try:
            response = client.request(
                method, self.base + path, params=params, content=content, headers=sent
            )
        except httpx.HTTPError as exc:
            tls = _tls_problem(exc)
            if tls is not None:
                raise ArcRequestError(
                    f"ARC CE {self.endpoint}: {what}: TLS failed ({tls.reason or tls}); "
                    "check ca_file/ca_dir and the client certificate",
                    transient=False,
                ) from exc
            raise ArcRequestError(
                f"ARC CE {self.endpoint}: {what}: {type(exc).__name__}: {exc}", transient=True
            ) from exc
        if response.is_success:
            return response
        code = response.status_code
        said = f"HTTP {code} {response.reason_phrase}".strip()
        if code in (401, 403):
            said += " (credentials refused: is the certificate or token authorised on the CE?)"
        raise ArcRequestError(
            f"ARC CE {self.endpoint}: {what}: {said}", transient=code >= 500, status=code
        )

    def jobs_action(self, action: str, job_ids: Sequence[str]) -> str:
        """POST /jobs?action=<action> for these ids; the answer's text."""
        response = self.request(
            "POST",
            "/jobs",
            f"action={action}",
            params={"action": action},
            content=job_ids_body(job_ids),
            headers={"Content-Type": "application/json"},
        )
        return response.text

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
