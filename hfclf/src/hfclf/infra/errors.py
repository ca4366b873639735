"""The one exception type for problems a user can fix (bad data, bad config, missing model).

Stages catch it and print its message without a traceback; everything else is a bug and keeps
its traceback.
"""


class UserError(Exception):
    """A problem with the user's input or setup, with a message that says how to fix it."""
