"""The one exception type users see for bad input."""


class ConfigError(ValueError):
    """Bad input: says what is wrong and how to fix it. The CLI prints it as one line."""
