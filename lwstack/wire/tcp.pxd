# C types for lwstack/wire/tcp.py (Cython pure-Python mode); the .py runs as it is without Cython.
cimport cython

# Compiled, the checksum functions are called through C (checksum.pxd), not as Python
# callables: both modules are in setup.py's HOT_MODULES and are built together.
from lwstack.wire.checksum cimport ones_sum, pseudo_header_sum, pseudo_header_sum6


cdef class TcpSegment:
    cdef public int src_port
    cdef public int dst_port
    cdef public unsigned int seq
    cdef public unsigned int ack
    cdef public int flags
    cdef public int window
    cdef public int urgent
    cdef public int header_len
    cdef public int mss
    cdef public int wscale
    cdef public bint sack_permitted
    cdef public bint has_timestamps
    cdef public unsigned int ts_val
    cdef public unsigned int ts_ecr
    cdef public tuple sack_blocks
    cdef public object payload


@cython.locals(n=Py_ssize_t, header_len=Py_ssize_t, seg=TcpSegment, initial="unsigned long")
cdef TcpSegment _decode(segment, src, dst, bint verify)

@cython.locals(i=Py_ssize_t, kind=int, length=int, b0="unsigned int", b1="unsigned int")
cdef int _parse_options(TcpSegment seg, const unsigned char[:] buf, Py_ssize_t end) except -1

@cython.locals(b0="unsigned int", b1="unsigned int", left="unsigned int", right="unsigned int")
cdef tuple _sack_blocks(const unsigned char[:] buf, Py_ssize_t start, Py_ssize_t end)

@cython.locals(options_len=Py_ssize_t, header_len=Py_ssize_t, length=Py_ssize_t,
               offset=int, total="unsigned long", checksum=int)
cpdef bytes build_tcp(src, dst, src_port, dst_port, seq, ack, flags, window, options=*,
                      payload=*, urgent=*)

@cython.locals(options_len=Py_ssize_t, header_len=Py_ssize_t, tcp_len=Py_ssize_t,
               total_len=Py_ssize_t, start=Py_ssize_t, frame=bytearray, checksum="unsigned int",
               total="unsigned long")
cpdef bytearray build_tcp_frame(link_header, unsigned int ident, int src_port, int dst_port,
                                long long seq, long long ack, int flags, int window, options,
                                payload)

@cython.locals(options_len=Py_ssize_t, header_len=Py_ssize_t, tcp_len=Py_ssize_t,
               start=Py_ssize_t, frame=bytearray,
               checksum="unsigned int", total="unsigned long")
cpdef bytearray build_tcp_frame6(link_header, int src_port, int dst_port, long long seq,
                                 long long ack, int flags, int window, options, payload)

cpdef bint seq_lt(long long a, long long b)

@cython.locals(d="long long")
cpdef bint seq_le(long long a, long long b)

@cython.locals(d="long long")
cpdef bint seq_gt(long long a, long long b)

cpdef bint seq_ge(long long a, long long b)

cpdef long long seq_add(long long a, long long n)

cpdef long long seq_diff(long long a, long long b)
