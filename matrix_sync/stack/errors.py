"""The one exception the stack raises for problems a user can fix."""
from __future__ import annotations


class StackError(Exception):
    """One clear line for the user: what is wrong and what to do."""
