cimport cython

cdef bint _COMPILED

cpdef ones_sum(data, unsigned long initial=*)

@cython.locals(n=Py_ssize_t, i=Py_ssize_t, total="unsigned long long")
cpdef unsigned long _ones_sum_c(const unsigned char[:] view, unsigned long initial)

@cython.locals(total="unsigned long")
cpdef unsigned int internet_checksum(data, unsigned long initial=*)

@cython.locals(total="unsigned long")
cpdef unsigned long pseudo_header_sum(const unsigned char[:] src, const unsigned char[:] dst, int protocol, Py_ssize_t length)
