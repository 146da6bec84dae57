"""perf_event_open(2) constants under pyLCC's names (values from the kernel's uapi headers).

Used to fill pyLCC's perf event attribute dict::

    pfConfig = {"type": PerfType.SOFTWARE, "config": PerfSwConfig.CPU_CLOCK,
                "sample_freq": 99, "freq": 1}
    self.attachAllCpuPerf("on_sample", pfConfig)

and for a hardware breakpoint::

    {"type": PerfType.BREAKPOINT, "sample_period": 1, "wakeup_events": 1,
     "bp_type": PerfBreakPointType.W, "bp_addr": addr, "bp_len": PerfBreakPointLen.LEN_8}

Both ``PerfHwConfig``/``PerfSwConfig`` (lcc's spelling) and pyLCC's
``PerfHWConfig``/``PerfSwIds`` name the same tables.  The
``PERF_ATTR_SIZE_VER*`` values are the kernel's; lcc sets ``size`` itself
and ignores a ``"size"`` key.
"""

from __future__ import annotations

__all__ = [
    "PERF_ATTR_SIZE_VER0", "PERF_ATTR_SIZE_VER1", "PERF_ATTR_SIZE_VER2", "PERF_ATTR_SIZE_VER3",
    "PERF_ATTR_SIZE_VER4", "PERF_ATTR_SIZE_VER5", "PERF_ATTR_SIZE_VER6", "PERF_ATTR_SIZE_VER7",
    "PERF_ATTR_SIZE_VER8", "PERF_SAMPLE_BRANCH_PLM_ALL", "PerfBranchSampleType",
    "PerfBreakPointLen", "PerfBreakPointType", "PerfEventReadFormat", "PerfEventSampleFormat",
    "PerfFlag", "PerfHWCacheId", "PerfHWCacheOpId", "PerfHWCacheOpResultId", "PerfHWConfig",
    "PerfHwConfig", "PerfSwConfig", "PerfSwIds", "PerfType",
]


class PerfType:
    """``enum perf_type_id``: the ``type`` of an event."""

    HARDWARE = 0
    SOFTWARE = 1
    TRACEPOINT = 2
    HW_CACHE = 3
    RAW = 4
    BREAKPOINT = 5
    MAX = BREAKPOINT


class PerfHwConfig:
    """``enum perf_hw_id``: ``config`` of a ``PerfType.HARDWARE`` event."""

    CPU_CYCLES = 0
    INSTRUCTIONS = 1
    CACHE_REFERENCES = 2
    CACHE_MISSES = 3
    BRANCH_INSTRUCTIONS = 4
    BRANCH_MISSES = 5
    BUS_CYCLES = 6
    STALLED_CYCLES_FRONTEND = 7
    STALLED_CYCLES_BACKEND = 8
    REF_CPU_CYCLES = 9
    MAX = REF_CPU_CYCLES


PerfHWConfig = PerfHwConfig


class PerfHWCacheId:
    """``enum perf_hw_cache_id``: the cache of a ``PerfType.HW_CACHE`` event."""

    L1D = 0
    L1I = 1
    LL = 2
    DTLB = 3
    ITLB = 4
    BPU = 5
    NODE = 6
    MAX = NODE


class PerfHWCacheOpId:
    """``enum perf_hw_cache_op_id``."""

    READ = 0
    WRITE = 1
    PREFETCH = 2
    MAX = PREFETCH


class PerfHWCacheOpResultId:
    """``enum perf_hw_cache_op_result_id``."""

    ACCESS = 0
    MISS = 1
    MAX = MISS


class PerfSwConfig:
    """``enum perf_sw_ids``: ``config`` of a ``PerfType.SOFTWARE`` event."""

    CPU_CLOCK = 0
    TASK_CLOCK = 1
    PAGE_FAULTS = 2
    CONTEXT_SWITCHES = 3
    CPU_MIGRATIONS = 4
    PAGE_FAULTS_MIN = 5
    PAGE_FAULTS_MAJ = 6
    ALIGNMENT_FAULTS = 7
    EMULATION_FAULTS = 8
    DUMMY = 9
    BPF_OUTPUT = 10
    CGROUP_SWITCHES = 11
    MAX = CGROUP_SWITCHES


PerfSwIds = PerfSwConfig


class PerfEventSampleFormat:
    """``enum perf_event_sample_format``: bits of ``sample_type``."""

    IP = 1 << 0
    TID = 1 << 1
    TIME = 1 << 2
    ADDR = 1 << 3
    READ = 1 << 4
    CALLCHAIN = 1 << 5
    ID = 1 << 6
    CPU = 1 << 7
    PERIOD = 1 << 8
    STREAM_ID = 1 << 9
    RAW = 1 << 10
    BRANCH_STACK = 1 << 11
    REGS_USER = 1 << 12
    STACK_USER = 1 << 13
    WEIGHT = 1 << 14
    DATA_SRC = 1 << 15
    IDENTIFIER = 1 << 16
    TRANSACTION = 1 << 17
    REGS_INTR = 1 << 18
    PHYS_ADDR = 1 << 19
    AUX = 1 << 20
    CGROUP = 1 << 21
    DATA_PAGE_SIZE = 1 << 22
    CODE_PAGE_SIZE = 1 << 23
    WEIGHT_STRUCT = 1 << 24
    MAX = 1 << 25


class PerfBranchSampleType:
    """``enum perf_branch_sample_type``: bits of ``branch_sample_type``."""

    USER = 1 << 0
    KERNEL = 1 << 1
    HV = 1 << 2
    ANY = 1 << 3
    ANY_CALL = 1 << 4
    ANY_RETURN = 1 << 5
    IND_CALL = 1 << 6
    ABORT_TX = 1 << 7
    IN_TX = 1 << 8
    NO_TX = 1 << 9
    COND = 1 << 10
    CALL_STACK = 1 << 11
    IND_JUMP = 1 << 12
    CALL = 1 << 13
    NO_FLAGS = 1 << 14
    NO_CYCLES = 1 << 15
    TYPE_SAVE = 1 << 16
    HW_INDEX = 1 << 17
    PRIV_SAVE = 1 << 18
    MAX = 1 << 19


PERF_SAMPLE_BRANCH_PLM_ALL = (PerfBranchSampleType.USER | PerfBranchSampleType.KERNEL
                              | PerfBranchSampleType.HV)


class PerfEventReadFormat:
    """``enum perf_event_read_format``: bits of ``read_format``."""

    TOTAL_TIME_ENABLED = 1 << 0
    TOTAL_TIME_RUNNING = 1 << 1
    ID = 1 << 2
    GROUP = 1 << 3
    LOST = 1 << 4
    MAX = 1 << 5


class PerfBreakPointType:
    """``bp_type`` of a ``PerfType.BREAKPOINT`` event (linux/hw_breakpoint.h)."""

    EMPTY = 0
    R = 1
    W = 2
    RW = R | W
    X = 4
    INVALID = RW | X


class PerfBreakPointLen:
    """``bp_len`` of a breakpoint: the bytes watched (execute breakpoints: sizeof(long))."""

    LEN_1 = 1
    LEN_2 = 2
    LEN_3 = 3
    LEN_4 = 4
    LEN_5 = 5
    LEN_6 = 6
    LEN_7 = 7
    LEN_8 = 8


class PerfFlag:
    """The ``flags`` argument of perf_event_open(2) (lcc always adds ``FD_CLOEXEC``)."""

    FD_NO_GROUP = 1 << 0
    FD_OUTPUT = 1 << 1
    PID_CGROUP = 1 << 2
    FD_CLOEXEC = 1 << 3


# Sizes of struct perf_event_attr by revision, as the kernel defines them.
PERF_ATTR_SIZE_VER0 = 64    # first published struct
PERF_ATTR_SIZE_VER1 = 72    # adds config2
PERF_ATTR_SIZE_VER2 = 80    # adds branch_sample_type
PERF_ATTR_SIZE_VER3 = 96    # adds sample_regs_user, sample_stack_user
PERF_ATTR_SIZE_VER4 = 104   # adds sample_regs_intr
PERF_ATTR_SIZE_VER5 = 112   # adds aux_watermark
PERF_ATTR_SIZE_VER6 = 120   # adds aux_sample_size
PERF_ATTR_SIZE_VER7 = 128   # adds sig_data
PERF_ATTR_SIZE_VER8 = 136   # adds config3
