# C types for vde/core.py (Cython pure-Python mode): the .py stays importable without Cython.
cimport cython


cdef class Port:
    cdef public Py_ssize_t number
    cdef public Py_ssize_t endpoints
    cdef public int untagged_vlan
    cdef public bytes vlan_suffix
    cdef public long long frames_in
    cdef public long long bytes_in
    cdef public long long frames_out
    cdef public long long bytes_out
    cdef public dict drops
    cdef public tuple flood
    cdef public tuple flood_ports
    cdef public tuple only_me

    cpdef count_drop(self, reason)


cdef class MacEntry:
    cdef public bytes mac
    cdef public int vlan
    cdef public Port port
    cdef public tuple out
    cdef public double last_seen


cdef class SwitchCore:
    cdef public Py_ssize_t numports
    cdef public bint hub
    cdef public Py_ssize_t max_mac_entries
    cdef public double expire
    cdef public Py_ssize_t max_frame
    cdef public double min_persist
    cdef public dict ports
    cdef list _table
    cdef dict _macs
    cdef object _gc_due
    cdef double _full_sweep_due

    @cython.locals(port=Port, target=Port, entry=MacEntry, length=Py_ssize_t)
    cpdef forward(self, Py_ssize_t in_port, frame, double now)

    @cython.locals(entry=MacEntry)
    cdef _learn(self, bytes key, Port port, double now)
