"""The docker backend: the lcc compile service image on the local Docker engine.

A machine with Docker but no clang runs lcc tools through this backend
(``LCC_BACKEND=docker``, ``lcc compile --backend docker``,
``lcc.compile.build(bundle, backend="docker")``, or an object:
``build(bundle, backend=DockerServiceBackend("lcc-compiler:latest"))``).
:class:`DockerServiceBackend` is the :class:`lcc.compile.Backend`; for each
compile it asks :class:`DockerBackend` for the container and talks to it with
:class:`lcc.compile.service.ServiceClient`, as one can by hand::

    with DockerBackend() as backend:
        url = backend.endpoint()          # http://127.0.0.1:<port>, healthy
        client = ServiceClient(url, token=backend.token)

:meth:`DockerBackend.endpoint` starts one long-lived service container on
demand (named ``lcc-compiler``, published on 127.0.0.1 only, with a random
bearer token that only users of the Docker engine can read back) and reuses
it from then on, across processes: its artifact cache and BTF store live on
the named volume ``lcc-compiler-state``, so a later run is a cache hit.
A container left by an older build of the image is replaced.

The container sees the host's kernel: ``/sys/kernel/btf/vmlinux`` inside it
is the host's, so objects compiled through it match this kernel without a
BTF upload.

Trust: the service in the container signs what it returns, like any lcc
compile service (:mod:`lcc.compile.trust`).  :class:`DockerServiceBackend`
reads the public key from the container's own filesystem through the Docker
engine (:meth:`DockerBackend.signing_key`), not over HTTP, and pins it in
the user's trusted keys (comment ``docker container <name>``), so that its
objects, and the cache entries made from them, verify in later runs without
contacting the engine.  Whoever can use the Docker engine could change that
key, but such a user is root on this machine anyway.

Requires the ``docker`` extra (``pip install 'lcc[docker]'``), a Docker
engine this user may use, and the image, built by ``scripts/docker/build.sh``
in an lcc checkout.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import TYPE_CHECKING

from ..errors import (ClosedError, CompileServiceError, DockerImageMissing, DockerUnavailable,
                      LccError)
from .artifact import Artifact
from .config import DEFAULT_DOCKER_CONTAINER as CONTAINER_NAME
from .config import DEFAULT_DOCKER_IMAGE as DEFAULT_IMAGE
from .config import ClientConfig
from .trust import TrustedKey, TrustPolicy, TrustStore, default_trust_file, parse_keys

if TYPE_CHECKING:
    import requests

    from .bundle import Bundle

__all__ = ["DEFAULT_IMAGE", "DockerBackend", "DockerImageMissing", "DockerServiceBackend",
           "DockerUnavailable"]

SERVICE_PORT = 7655
BUILD_COMMAND = "scripts/docker/build.sh"

_LABEL = "org.lcc.role"
_STATE_DIR = "/var/lib/lcc"
_PUBLIC_KEY = f"{_STATE_DIR}/keys/signing.pub"

log = logging.getLogger(__name__)


class DockerServiceBackend:
    """The compile service image on the local Docker engine (a
    :class:`lcc.compile.Backend` named ``docker``).

    ``image``, ``container`` and ``port`` are :class:`DockerBackend`'s
    ``image``, ``name`` and ``port``; ``push_btf``: upload this kernel's BTF if
    the service lacks it (the container normally sees the host's).
    ``trust``: the keys its objects are checked with, to which the
    container's own key is added (default: the pinned keys and
    ``LCC_TRUSTED_KEYS``); ``store``: where that key is pinned (default: the
    user's trusted keys).  ``timeout`` and ``max_reply`` as
    :class:`lcc.compile.service.ServiceClient`'s (None: its defaults).  Each
    :meth:`compile` starts or reuses the container and leaves it running;
    the object holds no resources.
    """

    name = "docker"

    def __init__(self, image: str = DEFAULT_IMAGE, *, container: str = CONTAINER_NAME,
                 port: int | None = None, push_btf: bool = True,
                 trust: TrustPolicy | None = None, store: TrustStore | None = None,
                 timeout: float | None = None, max_reply: int | None = None) -> None:
        self.image = image
        self.container = container
        self.port = port
        self.push_btf = push_btf
        self.origin = f"docker:{image}"
        self.trust = (trust if trust is not None
                      else TrustPolicy.for_service(ClientConfig.from_env()))
        self.store = store if store is not None else TrustStore()
        self.timeout = timeout
        self.max_reply = max_reply

    @classmethod
    def from_config(cls, config: ClientConfig) -> DockerServiceBackend:
        """The image, container, port, BTF upload policy, trusted keys, timeout and
        reply cap of ``config``."""
        return cls(config.docker_image, container=config.docker_container,
                   port=config.docker_port, push_btf=config.push_btf,
                   trust=TrustPolicy.for_service(config),
                   store=TrustStore(default_trust_file(config)), timeout=config.timeout,
                   max_reply=config.max_reply_bytes)

    def __repr__(self) -> str:
        return f"DockerServiceBackend({self.image!r}, container={self.container!r})"

    def key_part(self) -> dict:
        return {"docker": self.image}

    def compile(self, bundle: Bundle, *, kernel: str, arch: str,
                defines: dict[str, str | None], btf: bool) -> Artifact:
        # Lazy: requests is slow to import, and a cache hit never gets here.
        from .service import DEFAULT_MAX_REPLY, DEFAULT_TIMEOUT, ServiceClient, compile_via
        with DockerBackend(self.image, name=self.container, port=self.port) as backend:
            url = backend.endpoint()
            self._pin(backend.signing_key())
            with ServiceClient(url, token=backend.token or "", trust=self.trust,
                               timeout=self.timeout or DEFAULT_TIMEOUT,
                               max_reply=self.max_reply or DEFAULT_MAX_REPLY) as client:
                art = compile_via(client, bundle, kernel=kernel, arch=arch, defines=defines,
                                  btf=btf, push_btf=self.push_btf)
        art.origin = self.origin
        return art

    def _pin(self, key: TrustedKey) -> None:
        """Trust the container's ``key`` now, and in later runs through ``store``."""
        if self.trust.find(key.fingerprint) is not None:
            return
        self.trust.add(key)
        pinned = TrustedKey(key.raw, f"docker container {self.container} ({self.image})")
        try:
            if self.store.add(pinned):
                log.info("pinned %s, the signing key of the compile service in container %s, "
                         "in %s", key.fingerprint, self.container, self.store.path)
        except LccError as e:
            log.warning("%s; the signing key of container %s is trusted for this run only",
                        e, self.container)


class DockerBackend:
    """The compile service, run as a container of ``image`` on the local engine.

    ``image`` (default lcc-compiler:latest), ``name`` of the container
    (default lcc-compiler; its state volume is ``<name>-state``), ``port``
    published on 127.0.0.1 (default: one the engine picks).  With
    ``keep_running`` (the default) the container outlives this object for
    the next run to reuse; otherwise :meth:`close` removes the container if
    this object started it.  ``start_timeout`` bounds the wait for
    ``/healthz``.
    """

    def __init__(self, image: str | None = None, *, name: str | None = None,
                 port: int | None = None, keep_running: bool = True,
                 start_timeout: float = 60.0) -> None:
        self.image = image or DEFAULT_IMAGE
        self.name = name or CONTAINER_NAME
        self.volume = f"{self.name}-state"
        self.port = port
        self.keep_running = keep_running
        self.start_timeout = start_timeout
        self._client = None
        self._container = None
        self._started = False
        self._url: str | None = None
        self._token: str | None = None
        self._http: requests.Session | None = None  # made by _wait_healthy
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------

    def endpoint(self) -> str:
        """Base URL (``http://127.0.0.1:PORT``) of a healthy service container.

        Reuses a running ``lcc-compiler`` container of the same image; otherwise
        (re)creates it and waits for ``/healthz``. Raises DockerUnavailable,
        DockerImageMissing, or CompileServiceError when the container does not
        become healthy (with the end of its log).
        """
        self._check_open()
        if self._url is None:
            client = self._docker()
            image = self._image(client)
            # Other processes may be creating or replacing the container meanwhile.
            deadline = time.monotonic() + self.start_timeout
            while (container := self._reuse(client, image) or self._start(client, image)) is None:
                if time.monotonic() > deadline:
                    raise CompileServiceError(
                        f"could not start or find container {self.name}",
                        hint=f"see `docker ps -a --filter name={self.name}`")
                time.sleep(0.2)
            self._container = container
            url = f"http://127.0.0.1:{self._host_port(container)}"
            self._token = _env_of(container).get("LCC_TOKEN") or None
            self._wait_healthy(container, url)
            self._url = url
        return self._url

    def image_id(self) -> str:
        """The id (``sha256:...``) of ``image`` in the engine, without starting anything;
        it changes with every rebuild, so it can key a cache of compiled objects.
        Raises DockerUnavailable or DockerImageMissing."""
        self._check_open()
        return self._image(self._docker()).id

    @property
    def token(self) -> str | None:
        """The bearer token of the container's service (known after :meth:`endpoint`)."""
        return self._token

    def signing_key(self) -> TrustedKey:
        """The public key the container's service signs with, read from the
        container's filesystem through the Docker engine (not over HTTP).

        Starts the container as :meth:`endpoint` does if needed.  Raises
        :class:`CompileServiceError` when the service has no key there (an
        image from before signing: rebuild it), DockerUnavailable.
        """
        self.endpoint()
        import io
        import tarfile

        import docker
        try:
            stream, _ = self._container.get_archive(_PUBLIC_KEY)
            data = b"".join(stream)
        except docker.errors.NotFound:
            raise CompileServiceError(
                f"the compile service in container {self.name} has no signing key at "
                f"{_PUBLIC_KEY}", hint=f"rebuild the image: {BUILD_COMMAND}") from None
        except docker.errors.APIError as e:
            raise DockerUnavailable(f"the Docker engine could not read {_PUBLIC_KEY} from "
                                    f"container {self.name}: {_one_line(e)}") from None
        try:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                member = tar.next()
                f = tar.extractfile(member) if member is not None else None
                text = f.read(64 << 10).decode("utf-8") if f is not None else ""
            keys = parse_keys(text, source=f"container {self.name}:{_PUBLIC_KEY}")
        except (tarfile.TarError, UnicodeDecodeError, LccError) as e:
            raise CompileServiceError(f"cannot read the signing key of container {self.name}: "
                                      f"{e}") from None
        if len(keys) != 1:
            raise CompileServiceError(f"{_PUBLIC_KEY} in container {self.name} holds "
                                      f"{len(keys)} keys, not one")
        return keys[0]

    def headers(self) -> dict[str, str]:
        """HTTP headers a request to :meth:`endpoint` needs."""
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def close(self) -> None:
        """Release the engine connection; remove the container if this object started it
        and ``keep_running`` is false. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._started and not self.keep_running and self._container is not None:
                import docker
                try:
                    self._container.remove(force=True)
                except docker.errors.NotFound:  # already gone: nothing to release
                    pass
        finally:
            if self._http is not None:
                self._http.close()
            if self._client is not None:
                self._client.close()

    def __enter__(self) -> "DockerBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- steps of endpoint() -----------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("DockerBackend used after close()")

    def _docker(self):
        """A client of a Docker engine that answers."""
        if self._client is None:
            try:
                import docker
            except ImportError:
                raise DockerUnavailable(
                    "the docker backend needs the Docker SDK for Python",
                    hint="pip install 'lcc[docker]'") from None
            try:
                client = docker.from_env()
                client.ping()
            except docker.errors.DockerException as e:
                raise DockerUnavailable(f"no Docker engine answered: {_one_line(e)}") from None
            self._client = client
        return self._client

    def _image(self, client):
        import docker
        try:
            return client.images.get(self.image)
        except docker.errors.ImageNotFound:
            raise DockerImageMissing(f"the image {self.image} is not in the Docker engine") from None
        except docker.errors.APIError as e:
            raise DockerUnavailable(f"the Docker engine failed to list {self.image}: "
                                    f"{_one_line(e)}") from None

    def _reuse(self, client, image):
        """The live container of this image, or None after removing a stale one."""
        import docker
        try:
            container = client.containers.get(self.name)
        except docker.errors.NotFound:
            return None
        if container.image.id == image.id and container.status in ("created", "running"):
            # "created": another process is starting it right now.
            return self._published(container)
        # Stopped, or from an older build of the image: start afresh (the volume stays).
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        return None

    def _start(self, client, image):
        import docker
        token = secrets.token_urlsafe(32)
        try:
            container = client.containers.run(
                image.id,
                name=self.name,
                detach=True,
                init=True,  # forwards SIGTERM to the server and reaps clang processes
                environment={"LCC_TOKEN": token},
                ports={f"{SERVICE_PORT}/tcp": ("127.0.0.1", self.port) if self.port
                       else ("127.0.0.1",)},
                volumes={self.volume: {"bind": _STATE_DIR, "mode": "rw"}},
                labels={_LABEL: "compile-service"},
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                read_only=True,
                tmpfs={"/tmp": "rw,nosuid,nodev,size=512m"},
            )
        except docker.errors.APIError as e:
            if e.status_code == 409:
                # Another process is creating it: use theirs. None while the engine has
                # reserved the name but does not list the container yet (or it went away).
                try:
                    return self._published(client.containers.get(self.name))
                except docker.errors.NotFound:
                    return None
            raise CompileServiceError(f"could not start the {self.image} container: "
                                      f"{_one_line(e)}") from None
        self._started = True
        container.reload()
        return container

    def _published(self, container):
        deadline = time.monotonic() + self.start_timeout
        while not self._host_port(container, required=False) \
                and container.status in ("created", "running") and time.monotonic() < deadline:
            time.sleep(0.2)
            container.reload()
        return container

    def _host_port(self, container, *, required: bool = True) -> str | None:
        bindings = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}) \
            .get(f"{SERVICE_PORT}/tcp") or []
        for b in bindings:
            if b.get("HostIp") in ("127.0.0.1", "") and b.get("HostPort"):
                return b["HostPort"]
        if required:
            raise CompileServiceError(f"container {self.name} publishes no port for "
                                      f"{SERVICE_PORT}/tcp on 127.0.0.1")
        return None

    def _wait_healthy(self, container, url: str) -> None:
        import requests  # lazy, as in DockerServiceBackend.compile()
        if self._http is None:
            self._http = requests.Session()
            # The service is on loopback; a proxy from the environment must not see it.
            self._http.trust_env = False
        deadline = time.monotonic() + self.start_timeout
        last = "no answer yet"
        while True:
            try:
                r = self._http.get(f"{url}/healthz", headers=self.headers(), timeout=2)
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}"
            except requests.RequestException as e:
                last = _one_line(e)
            container.reload()
            if container.status not in ("created", "running") or time.monotonic() > deadline:
                logs = container.logs(tail=20).decode(errors="replace").strip()
                raise CompileServiceError(
                    f"the compile service in container {self.name} did not become healthy "
                    f"(status {container.status}, {last})",
                    detail=logs, hint=f"see `docker logs {self.name}`")
            time.sleep(0.2)


def _env_of(container) -> dict[str, str]:
    env = container.attrs.get("Config", {}).get("Env") or []
    return dict(item.split("=", 1) for item in env if "=" in item)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
