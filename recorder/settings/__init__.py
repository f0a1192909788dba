"""Settings: one frozen object built from defaults < TOML file < environment < command-line flags.

The package keeps the generic loader apart from the recorder's own settings:

- :mod:`~recorder.settings.units`: durations and sizes, read and written (``"1h30m"``,
  ``"64MiB"``);
- :mod:`~recorder.settings.invalid`: the error a value parser raises, and how a rejected value is
  quoted and a likely meaning suggested;
- :mod:`~recorder.settings.keys`: how a key is declared, the parsers of generic kinds (durations,
  sizes, integers, choices) and the table of sections a loader reads;
- :mod:`~recorder.settings.values`: the recorder's own kinds of value (websocket URL, symbols,
  dataset root, instance id, listening address);
- :mod:`~recorder.settings.sections`: :class:`Settings` and its sections, their defaults and
  cross-key rules;
- :mod:`~recorder.settings.loader`: the layers, their precedence and strict errors with "did you
  mean".
"""

from recorder.settings.loader import (
    CONFIG_ENV_VAR,
    ENV_PREFIX,
    env_var_name,
    load_settings,
    parse_settings,
    settings_to_mapping,
)
from recorder.settings.sections import (
    LOG_FORMATS,
    LOG_LEVELS,
    GapSettings,
    LogSettings,
    MetricsSettings,
    ServiceSettings,
    Settings,
    SourceSettings,
    StorageSettings,
)
from recorder.settings.units import format_duration, format_size, parse_duration, parse_size

__all__ = [
    "CONFIG_ENV_VAR",
    "ENV_PREFIX",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "GapSettings",
    "LogSettings",
    "MetricsSettings",
    "ServiceSettings",
    "Settings",
    "SourceSettings",
    "StorageSettings",
    "env_var_name",
    "format_duration",
    "format_size",
    "load_settings",
    "parse_duration",
    "parse_settings",
    "parse_size",
    "settings_to_mapping",
]
