"""libbpf's C interface as ctypes declarations: option structs, callback types, prototypes.

Data only: :mod:`lcc._libbpf` loads the library and gives each function its
prototype from :data:`PROTOTYPES` when it is first called.  Struct layouts
are libbpf 1.1's (later versions only append members, and ``sz`` tells
libbpf how much of a struct the caller knows).
"""

from __future__ import annotations

import ctypes as ct

# -- C types -----------------------------------------------------------------

c_obj_p = ct.c_void_p  # struct bpf_object *
c_prog_p = ct.c_void_p  # struct bpf_program *
c_map_p = ct.c_void_p  # struct bpf_map *
c_link_p = ct.c_void_p  # struct bpf_link *
c_btf_p = ct.c_void_p  # struct btf *


class bpf_object_open_opts(ct.Structure):
    _fields_ = [
        ("sz", ct.c_size_t),
        ("object_name", ct.c_char_p),
        ("relaxed_maps", ct.c_bool),
        ("pin_root_path", ct.c_char_p),
        ("_attach_prog_fd", ct.c_uint32),
        ("kconfig", ct.c_char_p),
        ("btf_custom_path", ct.c_char_p),
        ("kernel_log_buf", ct.c_void_p),
        ("kernel_log_size", ct.c_size_t),
        ("kernel_log_level", ct.c_uint32),
    ]


class bpf_uprobe_opts(ct.Structure):
    _fields_ = [
        ("sz", ct.c_size_t),
        ("ref_ctr_offset", ct.c_size_t),
        ("bpf_cookie", ct.c_uint64),
        ("retprobe", ct.c_bool),
        ("func_name", ct.c_char_p),
    ]


class bpf_usdt_opts(ct.Structure):
    _fields_ = [("sz", ct.c_size_t), ("usdt_cookie", ct.c_uint64)]


class bpf_map_batch_opts(ct.Structure):
    _fields_ = [("sz", ct.c_size_t), ("elem_flags", ct.c_uint64), ("flags", ct.c_uint64)]


class bpf_prog_load_opts(ct.Structure):
    _fields_ = [
        ("sz", ct.c_size_t),
        ("attempts", ct.c_int),
        ("expected_attach_type", ct.c_int),
        ("prog_btf_fd", ct.c_uint32),
        ("prog_flags", ct.c_uint32),
        ("prog_ifindex", ct.c_uint32),
        ("kern_version", ct.c_uint32),
        ("attach_btf_id", ct.c_uint32),
        ("attach_prog_fd", ct.c_uint32),
        ("attach_btf_obj_fd", ct.c_uint32),
        ("fd_array", ct.c_void_p),
        ("func_info", ct.c_void_p),
        ("func_info_cnt", ct.c_uint32),
        ("func_info_rec_size", ct.c_uint32),
        ("line_info", ct.c_void_p),
        ("line_info_cnt", ct.c_uint32),
        ("line_info_rec_size", ct.c_uint32),
        ("log_level", ct.c_uint32),
        ("log_size", ct.c_uint32),
        ("log_buf", ct.c_char_p),
    ]


class bpf_iter_attach_opts(ct.Structure):
    _fields_ = [("sz", ct.c_size_t), ("link_info", ct.c_void_p), ("link_info_len", ct.c_uint32)]


# (level, format, va_list): the format stays a pointer, only vsnprintf reads it
PRINT_FN = ct.CFUNCTYPE(ct.c_int, ct.c_int, ct.c_void_p, ct.c_void_p)
RINGBUF_SAMPLE_FN = ct.CFUNCTYPE(ct.c_int, ct.c_void_p, ct.c_void_p, ct.c_size_t)
PERF_SAMPLE_FN = ct.CFUNCTYPE(None, ct.c_void_p, ct.c_int, ct.c_void_p, ct.c_uint32)
PERF_LOST_FN = ct.CFUNCTYPE(None, ct.c_void_p, ct.c_int, ct.c_uint64)

_i, _u32, _sz, _vp = ct.c_int, ct.c_uint32, ct.c_size_t, ct.c_void_p
_cp, _b = ct.c_char_p, ct.c_bool

# name -> (restype, argtypes). Everything lcc calls is declared here.
PROTOTYPES: dict[str, tuple[object, list]] = {
    # version and global settings
    "libbpf_major_version": (_u32, []),
    "libbpf_minor_version": (_u32, []),
    "libbpf_set_print": (_vp, [PRINT_FN]),
    "libbpf_num_possible_cpus": (_i, []),
    "libbpf_probe_bpf_prog_type": (_i, [_i, _vp]),
    "libbpf_probe_bpf_map_type": (_i, [_i, _vp]),
    "libbpf_probe_bpf_helper": (_i, [_i, _i, _vp]),
    "libbpf_bpf_prog_type_str": (_cp, [_i]),
    "libbpf_bpf_map_type_str": (_cp, [_i]),
    "libbpf_bpf_attach_type_str": (_cp, [_i]),
    # object
    "bpf_object__open_mem": (c_obj_p, [_vp, _sz, ct.POINTER(bpf_object_open_opts)]),
    "bpf_object__load": (_i, [c_obj_p]),
    "bpf_object__close": (None, [c_obj_p]),
    "bpf_object__name": (_cp, [c_obj_p]),
    "bpf_object__btf": (c_btf_p, [c_obj_p]),
    "bpf_object__next_program": (c_prog_p, [c_obj_p, c_prog_p]),
    "bpf_object__next_map": (c_map_p, [c_obj_p, c_map_p]),
    # programs
    "bpf_program__name": (_cp, [c_prog_p]),
    "bpf_program__section_name": (_cp, [c_prog_p]),
    "bpf_program__autoload": (_b, [c_prog_p]),
    "bpf_program__set_autoload": (_i, [c_prog_p, _b]),
    "bpf_program__fd": (_i, [c_prog_p]),
    "bpf_program__type": (_i, [c_prog_p]),
    "bpf_program__expected_attach_type": (_i, [c_prog_p]),
    "bpf_program__set_attach_target": (_i, [c_prog_p, _i, _cp]),
    "bpf_program__insn_cnt": (_sz, [c_prog_p]),
    "bpf_program__attach": (c_link_p, [c_prog_p]),
    "bpf_program__attach_tracepoint": (c_link_p, [c_prog_p, _cp, _cp]),
    "bpf_program__attach_raw_tracepoint": (c_link_p, [c_prog_p, _cp]),
    "bpf_program__attach_kprobe": (c_link_p, [c_prog_p, _b, _cp]),
    "bpf_program__attach_uprobe_opts": (
        c_link_p, [c_prog_p, _i, _cp, _sz, ct.POINTER(bpf_uprobe_opts)]),
    "bpf_program__attach_usdt": (
        c_link_p, [c_prog_p, _i, _cp, _cp, _cp, ct.POINTER(bpf_usdt_opts)]),
    "bpf_program__attach_perf_event": (c_link_p, [c_prog_p, _i]),
    "bpf_program__attach_xdp": (c_link_p, [c_prog_p, _i]),
    "bpf_program__attach_cgroup": (c_link_p, [c_prog_p, _i]),
    "bpf_program__attach_trace": (c_link_p, [c_prog_p]),
    "bpf_program__attach_lsm": (c_link_p, [c_prog_p]),
    "bpf_program__attach_iter": (c_link_p, [c_prog_p, ct.POINTER(bpf_iter_attach_opts)]),
    # links
    "bpf_link__destroy": (_i, [c_link_p]),
    "bpf_link__fd": (_i, [c_link_p]),
    "bpf_iter_create": (_i, [_i]),
    # maps (libbpf objects)
    "bpf_map__name": (_cp, [c_map_p]),
    "bpf_map__type": (_i, [c_map_p]),
    "bpf_map__fd": (_i, [c_map_p]),
    "bpf_map__key_size": (_u32, [c_map_p]),
    "bpf_map__value_size": (_u32, [c_map_p]),
    "bpf_map__max_entries": (_u32, [c_map_p]),
    "bpf_map__set_max_entries": (_i, [c_map_p, _u32]),
    "bpf_map__set_value_size": (_i, [c_map_p, _u32]),
    "bpf_map__map_flags": (_u32, [c_map_p]),
    "bpf_map__btf_key_type_id": (_u32, [c_map_p]),
    "bpf_map__btf_value_type_id": (_u32, [c_map_p]),
    "bpf_map__initial_value": (_vp, [c_map_p, ct.POINTER(_sz)]),
    "bpf_map__is_internal": (_b, [c_map_p]),
    # maps (syscall wrappers)
    "bpf_map_lookup_elem": (_i, [_i, _vp, _vp]),
    "bpf_map_update_elem": (_i, [_i, _vp, _vp, ct.c_uint64]),
    "bpf_map_delete_elem": (_i, [_i, _vp]),
    "bpf_map_get_next_key": (_i, [_i, _vp, _vp]),
    "bpf_map_lookup_and_delete_elem": (_i, [_i, _vp, _vp]),
    "bpf_map_lookup_batch": (
        _i, [_i, _vp, _vp, _vp, _vp, ct.POINTER(_u32), ct.POINTER(bpf_map_batch_opts)]),
    "bpf_prog_get_fd_by_id": (_i, [_u32]),
    "bpf_map_get_fd_by_id": (_i, [_u32]),
    "bpf_prog_load": (
        _i, [_i, _cp, _cp, _vp, _sz, ct.POINTER(bpf_prog_load_opts)]),
    # ring buffer
    "ring_buffer__new": (_vp, [_i, RINGBUF_SAMPLE_FN, _vp, _vp]),
    "ring_buffer__poll": (_i, [_vp, _i]),
    "ring_buffer__consume": (_i, [_vp]),
    "ring_buffer__free": (None, [_vp]),
    "ring_buffer__epoll_fd": (_i, [_vp]),
    # perf buffer
    "perf_buffer__new": (_vp, [_i, _sz, PERF_SAMPLE_FN, PERF_LOST_FN, _vp, _vp]),
    "perf_buffer__poll": (_i, [_vp, _i]),
    "perf_buffer__consume": (_i, [_vp]),
    "perf_buffer__free": (None, [_vp]),
    "perf_buffer__epoll_fd": (_i, [_vp]),
    # BTF
    "btf__type_by_id": (_vp, [c_btf_p, _u32]),  # const struct btf_type *
    "btf__name_by_offset": (_cp, [c_btf_p, _u32]),
    "btf__type_cnt": (_u32, [c_btf_p]),
    "btf__find_by_name_kind": (_i, [c_btf_p, _cp, _u32]),
    "btf__resolve_size": (ct.c_int64, [c_btf_p, _u32]),
    "btf__resolve_type": (_i, [c_btf_p, _u32]),
    "btf__align_of": (_i, [c_btf_p, _u32]),
    "btf__load_vmlinux_btf": (c_btf_p, []),
    "btf__parse": (c_btf_p, [_cp, _vp]),
    "btf__free": (None, [c_btf_p]),
}
