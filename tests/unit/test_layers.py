"""The house stays one-way: each package imports only the layers below it, and no cycle."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "recorder"

# Each layer may import the layers listed for it, and itself; the base modules import only
# each other (and the standard library).
BASE = {
    "model",
    "errors",
    "clock",
    "symbols",
    "instance",
    "durable",
    "hive",
    "exchange_limits",
    "event_columns",
    "rolling_extremes",
    "recorder",
}
ALLOWED: dict[str, set[str]] = {
    "base": BASE,
    "settings": BASE,
    "ops": BASE | {"settings"},
    "storage": BASE | {"settings", "ops"},
    "gaps": BASE | {"settings", "ops"},
    "ingest": BASE | {"settings", "ops", "gaps"},
    "reports": BASE | {"settings", "ops", "gaps", "storage"},
    "simulate": BASE | {"settings"},
    "flush": BASE | {"settings", "ops", "gaps", "storage", "ingest"},
    "flush_reports": BASE | {"settings", "ops", "gaps", "storage", "ingest", "flush"},
    "backfill": BASE | {"settings", "ops", "gaps", "storage", "ingest"},
    "health": BASE | {"settings", "ops", "gaps", "storage", "ingest", "flush_reports"},
    "recorded_symbols": BASE | {"settings", "ops", "gaps", "storage", "ingest", "flush"},
    "reload": BASE | {"settings", "ops", "recorded_symbols"},
    "service": BASE
    | {
        "settings",
        "ops",
        "gaps",
        "storage",
        "ingest",
        "flush",
        "flush_reports",
        "recorded_symbols",
        "reload",
        "health",
    },
    "cli": BASE
    | {
        "settings",
        "ops",
        "gaps",
        "storage",
        "ingest",
        "reports",
        "service",
        "simulate",
        "backfill",
    },
    "__main__": {"cli"},
}


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "base"
    name = parts[1]
    return "base" if name in BASE else name


def _imports() -> list[tuple[str, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("recorder")
            ):
                found.append((module, node.module))
            elif isinstance(node, ast.Import):
                found.extend((module, a.name) for a in node.names if a.name.startswith("recorder"))
    return found


def _target_name(imported: str) -> str:
    parts = imported.split(".")
    return parts[1] if len(parts) > 1 else "recorder"


@pytest.mark.parametrize(("importer", "imported"), _imports())
def test_every_import_goes_down_the_layers(importer: str, imported: str) -> None:
    layer = _layer(importer)
    target = _target_name(imported)
    if layer == "base":
        assert target in BASE, f"{importer} (base) imports {imported}"
        return
    if target == layer or target == _target_name(importer):
        return
    assert target in ALLOWED[layer], f"{importer} ({layer}) imports {imported} ({target})"


def test_only_service_and_cli_wire_the_running_recorder() -> None:
    wiring = {m for m, i in _imports() if i == "recorder.service"}
    assert wiring <= {"recorder.cli.main"}, wiring


def test_no_module_reaches_into_another_packages_private_names() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        own = parts[1] if len(parts) > 2 else None
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("recorder")
            ):
                other = _target_name(node.module)
                private = [
                    a.name
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
                if private and other != own:
                    offenders.append(f"{'.'.join(parts)} imports {private} from {node.module}")
    assert not offenders, offenders
