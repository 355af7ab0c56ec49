"""moto's server (same arguments as ``moto_server``) with scripts/moto_ebs_fixes.py applied."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import moto_ebs_fixes  # noqa: E402,F401  (applies the fixes on import)
from moto.server import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
