"""``python -m syncframe`` is the ``syncframe`` command."""
import sys

from .cli import main

sys.exit(main())
