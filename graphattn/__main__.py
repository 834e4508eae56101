"""``python -m graphattn``: the ``graphattn`` command without its installed entry point."""
from .cli import main

main()
