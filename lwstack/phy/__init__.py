"""Physical layer adapters: the only code that moves frames in and out of a process.

Each adapter offers the same small interface to the runtime:

- ``send(frame)``: hand one frame to the network, never blocking (a full queue drops it);
- ``receive()``: every frame ready now, without blocking;
- ``wait(timeout)``: block until frames may be ready, :meth:`wake` is called, or ``timeout``
  (seconds, None = forever) passes;
- ``wake()``: interrupt a ``wait`` from another thread;
- ``close()``.
"""
