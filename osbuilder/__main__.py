"""The `osbuilder` program, as `python -m osbuilder` and as the console script."""

import gc
from typing import NoReturn


def run() -> NoReturn:
    # Loading osbuilder and its libraries makes some 100,000 objects that live as long as
    # the process: the cycle collector would walk them dozens of times while they load, to
    # find nothing (~5 ms of every command). Frozen, later collections pass them over.
    gc.disable()
    from osbuilder import cli

    gc.freeze()
    gc.enable()
    cli.run()


if __name__ == "__main__":
    run()
