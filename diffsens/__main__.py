"""``python -m diffsens``: the demonstration in :mod:`diffsens.demo`."""
from .demo import main

main()
