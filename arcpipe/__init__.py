"""arcpipe: the HRM ARC-AGI recipe as cached, measurable stages.

Every CLI verb is a thin layer over a function importable from here or
from the stage modules (``arcpipe.augment``, ``arcpipe.train``, ...).
"""

from arcpipe.errors import ArcpipeError

__version__ = "0.1.0"
__all__ = ["ArcpipeError", "__version__"]
