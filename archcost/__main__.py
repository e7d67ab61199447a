"""``python -m archcost`` runs the command line."""

from archcost.cli import main

main()
