"""The one kind of error the ``gradschool`` command reports as a single line (exit status 2)."""


class UserError(Exception):
    """A problem the user can fix (a missing file, an unknown assignment): the message is one
    line that says what is wrong and how to fix it."""
