"""Clay pipeline library: shared by every function through the CommonLayer."""

import gc
import os

__version__ = "0.1.0"

# In a Lambda execution environment (only Lambda sets AWS_LAMBDA_RUNTIME_API) a handler's init runs with the
# cyclic garbage collector off: the ~100,000 objects it creates (modules, classes, settings, clients' owners)
# live as long as the process, and the collections among them cost 20-40 ms of each cold start's CPU, about a
# tenth (bench/cold_start.py). Each handler ends its init with init_done(). Local runs and tests never switch it.
if os.environ.get("AWS_LAMBDA_RUNTIME_API"):
    gc.disable()


def init_done() -> None:
    """The end of a handler's init: what init made is frozen (later collections skip it) and the collector is on.

    Init leaves only a few hundred unreachable objects behind (a full collection there finds ~520 of ~115,000,
    and would cost the 50 ms saved), so they are frozen with the rest. Nothing to do outside Lambda."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()
