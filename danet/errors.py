"""Errors in what the user gave us (config, weights, data). Their messages name
the key or path and say what to do, and are all the user needs to see."""
import contextlib
import re
import sys


class InputError(ValueError):
    pass


class MissingInputError(InputError, FileNotFoundError):
    """A file or folder the user pointed us to (or should have made) is missing."""


@contextlib.contextmanager
def exit_on_input_error(program):
    """Turn an InputError, or detectron2's error for a non-finite loss, into a
    one-line message and exit status 1.

    An InputError raised in a data-loader worker arrives wrapped with the
    worker's traceback; its last line is the original message.
    """
    try:
        yield
    except InputError as e:
        last_line = str(e).strip().splitlines()[-1]
        message = re.sub(r"^[\w.]+Error: ", "", last_line)
        sys.exit(f"{program}: error: {message}")
    except FloatingPointError as e:
        # "Loss became infinite or NaN at iteration=N!\nloss_dict = {...}"
        message = " ".join(str(e).split())
        sys.exit(f"{program}: error: {message} Lower SOLVER.BASE_LR, or check the data and MODEL.PIXEL_STD.")
