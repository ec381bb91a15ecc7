"""Third-party warnings that are not the user's business, silenced where they come from.

compressai imports torch_geometric when it is installed, which wraps classes with
``torch.jit.script`` at import time; torch 2.14 warns that the function is deprecated, once
per process that imports compressai (every worker). Nothing a user of the harness can act
on, so it is filtered by category and by the module that issues it; every other warning
still shows.
"""

from __future__ import annotations

import warnings

#: (category, module that issues it, message start): each one is not the user's to act on.
SILENCED = ((FutureWarning, r"torch\.jit\._script", r"`torch\.jit\.script` is deprecated"),)


def quiet_third_party() -> None:
    """Install the filters in this process (the CLI and every worker call it first)."""
    for category, module, message in SILENCED:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
