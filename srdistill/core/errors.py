"""The one exception type for bad user input: its message is a single line naming the file or option."""


class SRDistillError(ValueError):
    """Bad input (file, option, checkpoint path). Entry scripts print it as one line and exit with status 2."""


def first_line(err: BaseException) -> str:
    """The first line of a library's (often multi-line) error message, for embedding in a one-line error."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
