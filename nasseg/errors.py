"""One exception hierarchy for everything a user can get wrong.

Every message names the culprit (file, key path, block, argument or token), the bad value and what
would be valid.  The CLI turns any ``NassegError`` into a one-line message and exit code 2.
"""

from __future__ import annotations


class NassegError(Exception):
    """Base class of every error nasseg raises on bad input or an impossible request."""


class ConfigError(NassegError, ValueError):
    """A YAML file, a CLI option or a recipe holds a value that is not allowed."""


class BlockArgumentError(ConfigError):
    """A registered module got an argument it does not take, or a value outside what it allows."""

    def __init__(self, block: str, argument: str, value: object, allowed: str):
        self.block, self.argument, self.value, self.allowed = block, argument, value, allowed
        super().__init__(f"block '{block}': argument '{argument}' = {value!r} is not allowed; {allowed}")


class UnknownBlockError(ConfigError, KeyError):
    """A registry name that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class GenomeError(NassegError, ValueError):
    """A genome (JSON or compact string) that cannot be parsed or built."""


class DatasetError(NassegError, ValueError):
    """A dataset directory, image or mask that does not follow its layout."""


class StorageError(NassegError, RuntimeError):
    """A study database that cannot be opened, or a study that does not exist."""
