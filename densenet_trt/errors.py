"""The one exception type that errors a user can cause are raised with."""


class DenseNetTRTError(Exception):
    """A bad input, file or setting: the message names the input and the fix.

    The command line prints it as one line and exits non-zero.
    """
