"""condiff: small pixel-space diffusion models you train yourself, unconditional and conditional.

Importing this package is cheap (no torch); heavy modules are imported where they are used.
"""

from condiff.errors import CondiffError

__version__ = "0.1.0"
__all__ = ["CondiffError", "__version__"]
