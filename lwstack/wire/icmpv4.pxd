# C types for lwstack/wire/icmpv4.py (Cython pure-Python mode); the .py runs as it is without Cython.
cimport cython

from lwstack.wire.checksum cimport internet_checksum, ones_sum


@cython.locals(length=Py_ssize_t, total_len=Py_ssize_t, checksum="unsigned int",
               total="unsigned long", i=Py_ssize_t, at=Py_ssize_t, frame=bytearray,
               buf="unsigned char[:]")
cpdef bytearray build_echo_reply_frame(link_header, unsigned int ident, request)
