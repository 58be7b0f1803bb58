from squad.cli import entry

entry()
