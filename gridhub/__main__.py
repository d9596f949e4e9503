"""python -m gridhub == the gridhub command."""

from gridhub.cli import main

main()
