cimport cython
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy

cdef bint _COMPILED
cdef bint _LITTLE_ENDIAN

cpdef ones_sum(data, unsigned long initial=*)

@cython.locals(n=Py_ssize_t, i=Py_ssize_t, total=uint64_t, tail=uint64_t, word=uint32_t,
               p="const unsigned char *")
cpdef unsigned long _ones_sum_c(const unsigned char[:] view, unsigned long initial)

@cython.locals(total="unsigned long")
cpdef unsigned int internet_checksum(data, unsigned long initial=*)

@cython.locals(total="unsigned long")
cpdef unsigned long pseudo_header_sum(const unsigned char[:] src, const unsigned char[:] dst, int protocol, Py_ssize_t length)

@cython.locals(total="unsigned long", i=Py_ssize_t)
cpdef unsigned long pseudo_header_sum6(const unsigned char[:] src, const unsigned char[:] dst, int next_header, unsigned long length)
