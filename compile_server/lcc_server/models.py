"""JSON shapes of the HTTP API (pydantic), documented in the OpenAPI schema.

Requests are strict: wrong JSON types are rejected rather than coerced,
unknown fields are rejected (there is no way to pass compiler flags), and
patterns come from ``lcc_toolchain.validation``.  Size caps, which depend on the
settings, are checked by the endpoint with ``validation.check_bundle``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator

from lcc_toolchain import validation
from lcc_toolchain.validation import Caps

# The constraints the validators enforce, stated in the OpenAPI document (caps
# are the defaults; a service may be configured with others).
_CAPS = Caps()
_PATH_PATTERN = validation.PATH_RE.pattern

__all__ = ["BtfEntryModel", "BtfList", "BundleModel", "CompileRequest", "CompileResponse",
           "CompileErrorBody", "DiagnosticModel", "ErrorBody", "KeyList", "KeyModel"]

_STRICT = ConfigDict(extra="forbid", strict=True)


class BundleModel(BaseModel):
    """The main source's path and every file of the bundle (path -> text)."""

    model_config = _STRICT
    main: StrictStr = Field(max_length=1024, examples=["hello.bpf.c"],
                            json_schema_extra={"pattern": _PATH_PATTERN})
    files: dict[StrictStr, StrictStr] = Field(
        examples=[{"hello.bpf.c": '#include "lbc.h"\n...'}],
        description=f"relative path -> UTF-8 text without NUL; at most {_CAPS.max_files} "
                    f"files of {_CAPS.max_file_bytes} bytes, {_CAPS.max_bundle_bytes} in all "
                    "(defaults)",
        json_schema_extra={"minProperties": 1, "maxProperties": _CAPS.max_files,
                           "propertyNames": {"pattern": _PATH_PATTERN},
                           "additionalProperties": {"type": "string",
                                                    "maxLength": _CAPS.max_file_bytes}})

    @field_validator("main")
    @classmethod
    def _main(cls, v: str) -> str:
        return validation.check_path(v)


class CompileRequest(BaseModel):
    """POST /v1/compile."""

    model_config = _STRICT
    bundle: BundleModel
    kernel: StrictStr | None = Field(
        default=None, description="kernel release (uname -r); default: the server's own",
        json_schema_extra={"pattern": validation.RELEASE_RE.pattern, "maxLength": 128})
    arch: StrictStr | None = Field(
        default=None, description="kernel machine (uname -m); default: the server's own",
        json_schema_extra={"enum": sorted(validation.ARCHES)})
    defines: dict[StrictStr, StrictStr | None] = Field(
        default_factory=dict, description="NAME -> value (one line of UTF-8 text without "
                                          "NUL), or null for a bare -DNAME",
        json_schema_extra={"maxProperties": _CAPS.max_defines,
                           "propertyNames": {"pattern": validation.DEFINE_NAME_RE.pattern},
                           "additionalProperties": {
                               "anyOf": [{"type": "string", "maxLength": _CAPS.max_define_value,
                                          "pattern": "^[^\\n\\r\\x00]*$"},
                                         {"type": "null"}]}})
    btf: StrictBool = Field(default=False, description="also return BTF tailored to the "
                            "object for this kernel (bpftool gen min_core_btf)")

    @field_validator("kernel")
    @classmethod
    def _kernel(cls, v: str | None) -> str | None:
        return None if v is None else validation.check_release(v)

    @field_validator("arch")
    @classmethod
    def _arch(cls, v: str | None) -> str | None:
        return None if v is None else validation.check_arch(v)

    @field_validator("defines")
    @classmethod
    def _defines(cls, v: dict) -> dict:
        return validation.check_defines(v)


class DiagnosticModel(BaseModel):
    file: str
    line: int
    column: int
    severity: str
    message: str


class ProgramModel(BaseModel):
    name: str
    section: str


class MapModel(BaseModel):
    name: str
    section: str


class CompileResponse(BaseModel):
    """200 of POST /v1/compile and of GET /v1/artifacts/{digest}."""

    digest: str = Field(description="sha256 hex of the object")
    object: str = Field(description="the ELF object, base64")
    toolchain: dict
    warnings: list[DiagnosticModel]
    programs: list[ProgramModel]
    maps: list[MapModel]
    btf: str | None = Field(description="tailored BTF, base64, when asked for")
    cached: bool = Field(description="true when this request did not run the compiler")
    manifest: str = Field(description="the signed statement about this reply, canonical JSON "
                          "text (lcc_server.signing.manifest); clients trust only what it says")
    signature: str = Field(description="Ed25519 signature of manifest's UTF-8 bytes, base64")
    key_id: str = Field(description="fingerprint of the signing key (GET /v1/keys)")


class ErrorBody(BaseModel):
    """Every 4xx/5xx other than a compile error."""

    error: str
    detail: str


class CompileErrorBody(BaseModel):
    """422 of POST /v1/compile: clang rejected the bundle."""

    error: str = "compile"
    diagnostics: list[DiagnosticModel]
    log: str


class BtfEntryModel(BaseModel):
    arch: str
    release: str
    source: str = Field(description="host (the server's own kernel) or upload")
    size: int
    sha256: str
    owner: str | None = Field(None, description="the named token that uploaded it (from "
                              "LCC_TOKEN_FILE), host for a replica's own kernel, null when "
                              "not recorded")


class BtfList(BaseModel):
    btf: list[BtfEntryModel]


class KeyModel(BaseModel):
    id: str = Field(description="fingerprint: SHA256: and the unpadded base64 of the sha256 "
                    "of the raw public key")
    algorithm: str = Field(examples=["ed25519"])
    public_key: str = Field(description="the raw 32-byte public key, base64")
    status: str = Field(description="current (signs new replies) or retired (still honoured)")


class KeyList(BaseModel):
    """GET /v1/keys."""

    keys: list[KeyModel]
