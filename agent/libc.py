"""Linux system calls the standard library does not wrap, looked up once in the C library."""

from __future__ import annotations

import ctypes
import functools
from typing import Any


@functools.cache
def libc_function(name: str, *argtypes: Any) -> Any:
    """The C library's ``name`` (returning int, errno kept), or None where it lacks it - callers
    then fall back to a portable way."""
    try:
        fn = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes = list(argtypes)
    fn.restype = ctypes.c_int
    return fn
