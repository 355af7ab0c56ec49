"""The emulator's fixes: importing this module applies them (the fixes, by
theme, and the one table of patched methods are in scripts/moto_fixes/)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import moto_fixes  # noqa: E402,F401  (applies the fixes on import)
