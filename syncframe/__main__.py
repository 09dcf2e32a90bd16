"""``python -m syncframe`` is the ``syncframe`` command."""
from .cli import command

command()
