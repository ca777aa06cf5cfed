"""The `osbuilder` program, as `python -m osbuilder` and as the console script."""

from osbuilder.cli import run

if __name__ == "__main__":
    run()
