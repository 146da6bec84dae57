"""The type of an event map's events, when the map itself does not say.

A map declared with lbc.h's ``LBC_RINGBUF``/``LBC_PERF_OUTPUT`` names its
event type in BTF (the ``lbc_event`` member).  A libbpf program declares a
plain ``BPF_MAP_TYPE_RINGBUF`` or ``BPF_MAP_TYPE_PERF_EVENT_ARRAY`` and
keeps its event struct in a header shared with its C loader, so the type
has to be found another way:

- **named**: :func:`find_type` looks a C spelling (``struct event``) up in
  the object's BTF, then in the kernel's;
- **guessed**: :func:`output_sites` reads the object's instructions for the
  calls that send data to each map (``bpf_ringbuf_reserve``,
  ``bpf_ringbuf_output``, ``bpf_perf_event_output``, ``bpf_skb_output``,
  ``bpf_xdp_output``) and the constant size each passes;
  :func:`guess_event_type` picks the struct of the object's BTF with that
  size, leaving out the kernel's own types and preferring the tool's and
  names that say "event".

clang writes to BTF only the types the program's globals, functions and
maps use: a struct that only types locals (``struct event e = {};
bpf_perf_event_output(..., &e, sizeof(e))``) is not in the object at all.
:func:`defined_structs` finds the structs a tool's source defines and
:func:`keep_types_source` is C that, appended to the program, keeps them in
BTF without changing its code (one unused, never loaded static function
whose parameters point to them); ``lcc run`` does this when it compiles.
"""

from __future__ import annotations

import re
import struct
import weakref

from .._record import Record
from ..btf import KIND_STRUCT, KIND_UNION, Btf, BtfType
from ..errors import BtfError, LccError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, Iterable, Mapping

__all__ = ["EventTypeGuess", "OutputSite", "defined_structs", "find_type",
           "guess_event_type", "keep_types_source", "output_sites", "sites_of"]

#: helper id -> (name, register holding the map, register holding the size)
HELPERS = {
    25: ("bpf_perf_event_output", 2, 5),
    111: ("bpf_skb_output", 2, 5),
    121: ("bpf_xdp_output", 2, 5),
    130: ("bpf_ringbuf_output", 1, 3),
    131: ("bpf_ringbuf_reserve", 1, 2),
}

# Names that say a struct is an event (libbpf-tools: "event"; BCC: "data_t").
_EVENTISH = re.compile(r"event|data|record|sample|msg", re.I)


class OutputSite(Record):
    """One call that sends data to an event map: where, which helper, which
    map (None when the map pointer came from elsewhere) and how many bytes
    (None when the size is not a constant)."""

    __slots__ = ("section", "helper", "map", "size")
    _by_value = True

    def __init__(self, section: str, helper: str, map: str | None, size: int | None) -> None:
        self._set(section=section, helper=helper, map=map, size=size)


class EventTypeGuess(Record):
    """A guessed event type: ``type``, ``reason`` (one clause saying why), and
    ``others``, the names of candidates as likely by origin (all the tool's
    own, or all of unknown origin) that ranked lower by name or order."""

    __slots__ = ("type", "reason", "others")

    def __init__(self, type: BtfType, reason: str, others: tuple[str, ...] = ()) -> None:
        self._set(type=type, reason=reason, others=others)


# -- naming a type -------------------------------------------------------------------

def find_type(name: str, btf: Btf) -> BtfType:
    """The type ``name`` (``"struct event"``, ``"union u"``, a typedef) from ``btf``,
    else from the running kernel's BTF.

    Raises :class:`BtfError` when neither has it.
    """
    try:
        return btf.named_type(name)
    except BtfError:
        pass
    try:
        return Btf.vmlinux().named_type(name)
    except LccError:
        raise BtfError(f"type '{name}' is in neither the object's BTF nor the kernel's",
                       hint="clang keeps in BTF only the types that globals, functions or maps "
                            "use: 'lcc run --event-type' keeps the named type when it compiles "
                            "the source, or declare the map with LBC_RINGBUF/LBC_PERF_OUTPUT"
                       ) from None


# -- reading the instructions -------------------------------------------------------------

_EXEC = 0x4  # SHF_EXECINSTR


def output_sites(elf: bytes) -> list[OutputSite]:
    """Every call in the object ``elf`` that sends data to an event map (see
    :data:`HELPERS`), with the map and the size when they are known.

    Reads the ELF's executable sections and their relocations (pyelftools);
    the map is known when the call's map argument was loaded from a
    ``.maps`` symbol in the same function, and the size when it was a
    constant there.  Raises :class:`LccError` if ``elf`` is not an ELF object.
    """
    from io import BytesIO

    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection
    try:
        f = ELFFile(BytesIO(elf))
        maps_idx = next((i for i, s in enumerate(f.iter_sections()) if s.name == ".maps"), None)
        symtab = f.get_section_by_name(".symtab")
        big = not f.little_endian
        code = {i for i, sec in enumerate(f.iter_sections())
                if sec["sh_type"] == "SHT_PROGBITS" and sec["sh_flags"] & _EXEC}
        relocs: dict[int, dict[int, str]] = {}  # section index -> insn offset -> map
        maps: dict[int, str | None] = {}  # symbol index -> map name (None: not a map)
        for sec in f.iter_sections():
            # Only the code's relocations (not those of the debug info: thousands)
            if not isinstance(sec, RelocationSection) or symtab is None \
                    or sec["sh_info"] not in code:
                continue
            for r in sec.iter_relocations():
                idx = r["r_info_sym"]
                if idx not in maps:
                    sym = symtab.get_symbol(idx)
                    maps[idx] = sym.name if maps_idx is not None \
                        and sym["st_shndx"] == maps_idx else None
                if maps[idx] is not None:
                    relocs.setdefault(sec["sh_info"], {})[r["r_offset"]] = maps[idx]
        sites = []
        for i, sec in enumerate(f.iter_sections()):
            if i not in code:
                continue
            for helper, map_name, size in _scan(sec.data(), relocs.get(i, {}), big):
                sites.append(OutputSite(sec.name, helper, map_name, size))
        return sites
    except ELFError as e:
        raise LccError(f"not a BPF object: {e}") from None


_sites: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # spec -> its sites


def sites_of(spec: Any) -> list[OutputSite]:
    """:func:`output_sites` of an :class:`lcc.spec.ObjectSpec`'s object, read once per spec."""
    got = _sites.get(spec)
    if got is None:
        got = _sites[spec] = output_sites(spec.elf)
    return got


_INSN = {False: struct.Struct("<BBhi"), True: struct.Struct(">BBhi")}
_LD, _LDX, _STX, _ALU, _JMP, _JMP32, _ALU64 = 0x00, 0x01, 0x03, 0x04, 0x05, 0x06, 0x07
_LD_IMM64, _MOV, _CALL, _EXIT, _JA, _ATOMIC = 0x18, 0xB0, 0x80, 0x90, 0x00, 0xC0
_CALLER_SAVED = (0, 1, 2, 3, 4, 5)


def _decode(data: bytes, big: bool) -> list[tuple[int, int, int, int, int]]:
    """(code, dst, src, off, imm) of each instruction slot."""
    out = []
    for code, regs, off, imm in _INSN[big].iter_unpack(data[:len(data) // 8 * 8]):
        dst, src = ((regs >> 4, regs & 0xF) if big else (regs & 0xF, regs >> 4))
        out.append((code, dst, src, off, imm))
    return out


def _jump_target(i: int, code: int, off: int, imm: int) -> int | None:
    """Where the jump at ``i`` may go (None: not a jump, a call or an exit)."""
    cls, op = code & 0x07, code & 0xF0
    if cls not in (_JMP, _JMP32) or op in (_CALL, _EXIT):
        return None
    if cls == _JMP32 and op == _JA:  # gotol: the offset is in imm
        return i + imm + 1
    return i + off + 1


def _scan(data: bytes, map_at: Mapping[int, str], big: bool
          ) -> list[tuple[str, str | None, int | None]]:
    """(helper, map, size) of each output call in one section's code.

    A forward pass that knows, per register, a constant or a map loaded in
    the same function.  Where paths join, a register keeps what all of the
    forward edges agree on; a loop's head forgets everything.
    """
    insns = _decode(data, big)
    forward: dict[int, list[dict[int, object]]] = {}  # target -> states jumping there
    loop_heads = set()
    for i, (code, _d, _s, off, imm) in enumerate(insns):
        t = _jump_target(i, code, off, imm)
        if t is not None and t <= i:
            loop_heads.add(t)
    found = []
    regs: dict[int, object] | None = {}  # None: this point is reached only by jumps
    skip = False
    for i, (code, dst, src, off, imm) in enumerate(insns):
        if skip:  # the second half of a 64-bit load
            skip = False
            continue
        incoming = forward.pop(i, [])
        if regs is not None:
            incoming.append(regs)
        if i in loop_heads or not incoming:
            regs = {}
        else:
            first, rest = incoming[0], incoming[1:]
            regs = {r: v for r, v in first.items() if all(s.get(r) == v for s in rest)}
        cls, op = code & 0x07, code & 0xF0
        if code == _LD_IMM64:
            skip = True
            name = map_at.get(i * 8)
            if name is not None:
                regs[dst] = ("map", name)
            else:
                hi = insns[i + 1][4] if i + 1 < len(insns) else 0
                regs[dst] = ("imm", (imm & 0xFFFFFFFF) | (hi & 0xFFFFFFFF) << 32)
        elif cls in (_ALU, _ALU64):
            if op == _MOV and not code & 0x08:  # dst = imm
                regs[dst] = ("imm", imm if cls == _ALU64 else imm & 0xFFFFFFFF)
            elif op == _MOV and src in regs and cls == _ALU64:  # dst = src
                regs[dst] = regs[src]
            else:
                regs.pop(dst, None)
        elif cls == _LDX:
            regs.pop(dst, None)
        elif cls == _LD:  # legacy packet loads clobber the caller-saved registers
            for r in _CALLER_SAVED:
                regs.pop(r, None)
        elif cls == _STX and code & 0xE0 == _ATOMIC:  # fetch ops write src, cmpxchg r0
            regs.pop(src, None)
            regs.pop(0, None)
        elif cls in (_JMP, _JMP32):
            if op == _CALL:
                if src == 0 and imm in HELPERS:
                    helper, map_reg, size_reg = HELPERS[imm]
                    m, n = regs.get(map_reg), regs.get(size_reg)
                    found.append((helper, m[1] if m and m[0] == "map" else None,
                                  n[1] if n and n[0] == "imm" else None))
                for r in _CALLER_SAVED:
                    regs.pop(r, None)
            elif op == _EXIT:
                regs = None
            else:
                t = _jump_target(i, code, off, imm)
                if t is not None and t > i:
                    forward.setdefault(t, []).append(dict(regs))
                if op == _JA:
                    regs = None
    return found


# -- guessing ------------------------------------------------------------------------------

def _kernel_has(name: str, is_union: bool) -> bool:
    try:
        return Btf.vmlinux().find(name, KIND_UNION if is_union else KIND_STRUCT) is not None
    except LccError:
        return False


def guess_event_type(btf: Btf, map_name: str, sites: Iterable[OutputSite], *,
                     event_maps: int = 1, exclude: Iterable[int] = (),
                     prefer: Iterable[str] = ()) -> EventTypeGuess | None:
    """The struct that events of ``map_name`` most likely are, or None.

    ``sites`` are the object's output calls (:func:`output_sites`); those
    whose map is unknown count for this map when the object has one event
    map (``event_maps``).  Candidates are the named structs and unions of
    ``btf`` whose size is the largest constant size sent to the map (events
    of a smaller size are zero-filled to it), other than the types in
    ``exclude`` (BTF ids: the maps' key types, say) and the kernel's own
    types (those the program reads: a tracepoint's context...) unless
    ``prefer`` names them.  When no size is known, only types whose name says
    "event" or "data" are candidates.  They rank: a name in ``prefer``
    (``struct event`` or ``event``: the structs the tool's source defines), a
    name that says "event", then BTF order.
    """
    mine = [s for s in sites if s.map == map_name or (s.map is None and event_maps == 1)]
    sizes = sorted({s.size for s in mine if s.size is not None})
    want = sizes[-1] if sizes else None
    exclude = set(exclude)
    prefer = {p.split()[-1] for p in prefer}  # "struct event" -> "event"
    cands = [t for t in btf.named_structs()
             if t.id not in exclude and "___" not in t.name  # not a CO-RE flavor
             and (t.size == want if want is not None else _EVENTISH.search(t.name))
             # a kernel type the program reads (a tracepoint's context, say)
             and (t.name in prefer or not _kernel_has(t.name, t.is_union))]
    if not cands:
        return None
    ranked = sorted((t.name not in prefer, not _EVENTISH.search(t.name), t.id, t)
                    for t in cands)
    best = ranked[0][-1]
    # Other candidates worth a mention: as much the tool's own as the best one.
    others = tuple(str(r[-1]) for r in ranked[1:] if r[0] == ranked[0][0])
    if want is not None:
        calls = sorted({s.helper for s in mine if s.size == want})
        reason = f"{want} bytes, the size given to {' and '.join(calls)}"
        if len(sizes) > 1:
            reason += f" (the largest of {', '.join(map(str, sizes))})"
    else:
        reason = ("its name; the size given is not a constant" if mine
                  else "its name; no call in the object sends to this map")
    return EventTypeGuess(best, reason, others)


# -- keeping types in BTF -----------------------------------------------------------------

_STRUCT_DEF = re.compile(r"\b(struct|union)\s+([A-Za-z_]\w*)\s*(?:__attribute__\s*\(\(.*?\)\)\s*)?\{")
_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)


def defined_structs(texts: Iterable[str]) -> list[str]:
    """``struct NAME``/``union NAME`` of every struct or union the C ``texts``
    define (``struct NAME {``), in order, once each; CO-RE flavors
    (``task_struct___x``) left out."""
    seen: dict[str, None] = {}
    for text in texts:
        for kw, name in _STRUCT_DEF.findall(_COMMENT.sub(" ", text)):
            if "___" not in name:
                seen.setdefault(f"{kw} {name}", None)
    return list(seen)


KEEPER = "__lcc_keep_types"


def keep_types_source(names: Iterable[str]) -> str:
    """C to append to a program so that BTF keeps the ``struct``/``union`` types
    ``names``: a forward declaration of each (harmless when it is defined, and
    when it is not), then one static function, never called and so never
    loaded, whose parameters point to them.  Other spellings are skipped."""
    kept = [n for n in dict.fromkeys(" ".join(n.split()) for n in names)
            if re.fullmatch(r"(struct|union) [A-Za-z_]\w*", n)]
    if not kept:
        return ""
    params = ", ".join(f"{n} *t{i} __attribute__((unused))" for i, n in enumerate(kept))
    decls = "".join(f"{n};\n" for n in kept)
    return (f"\n/* added by lcc: keep these types in BTF to decode events */\n{decls}"
            f"__attribute__((used)) static void {KEEPER}({params}) {{}}\n")
