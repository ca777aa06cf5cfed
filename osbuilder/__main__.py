from osbuilder.cli import run

run()
