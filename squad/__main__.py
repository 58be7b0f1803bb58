from squad.cli import main

main(prog_name="squad")
