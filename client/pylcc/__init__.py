"""pyLCC's module names on lcc, so that pyLCC scripts run unchanged.

A pyLCC script starts with ``from pylcc.lbcBase import ClbcBase,
CeventThread``; with lcc installed those names are lcc's:

=====================  ========================================================
module                 what it holds
=====================  ========================================================
``pylcc.lbcBase``      ``ClbcBase`` (lcc's own, with pyLCC's method names),
                       ``CeventThread`` (a thread that polls one event map)
``pylcc.lbcMaps``      pyLCC's map class names for lcc's map classes
``pylcc.lbcStack``     ``getKStacks`` (kernel stack names), ``ClbcUstack``
                       (user stacks through ``/proc/PID/maps`` and ELF symbols)
``pylcc.perfEvent``    perf_event_open(2) constants: ``PerfType``,
                       ``PerfHwConfig``, ``PerfSwConfig``, ``PerfBreakPointType``...
=====================  ========================================================

Nothing here runs BPF on its own: every call goes to lcc's public API
(:class:`lcc.ClbcBase`, its maps and buffers, :mod:`lcc.loop`,
:mod:`lcc.procsyms`).  What differs from pyLCC is listed in lcc's README,
"Coming from pyLCC".
"""
