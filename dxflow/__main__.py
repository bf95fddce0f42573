"""`python -m dxflow`: the dxflow command line."""

from ._cli import main

main()
