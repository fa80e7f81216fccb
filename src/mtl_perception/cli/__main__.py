"""``python -m mtl_perception.cli``: the same as the ``mtl-perception`` console script."""
import sys

from mtl_perception.cli import main

sys.exit(main())
